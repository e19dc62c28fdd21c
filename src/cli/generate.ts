import { readFile, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { LIMITS } from "../core/generation.js";
import { connect, type Connection } from "./connect.js";
import { printJson } from "./output.js";
import { jobProgress, type JobProgress, type JobUpdate } from "./progress.js";
import { numberFlag, parseCommand, StoppedWaiting, UsageError } from "./usage.js";

const FLAGS = {
  model: { type: "string" },
  width: { type: "string" },
  height: { type: "string" },
  steps: { type: "string" },
  cfg: { type: "string" },
  seed: { type: "string" },
  scheduler: { type: "string" },
  negative: { type: "string" },
  refiner: { type: "boolean" },
  "refiner-mode": { type: "string" },
  count: { type: "string" },
  init: { type: "string" },
  mask: { type: "string" },
  "mask-blur": { type: "string" },
  strength: { type: "string" },
  lora: { type: "string", multiple: true },
  wait: { type: "boolean" },
  demo: { type: "boolean" },
} as const;

/**
 * job_status waits this long per call; the server sends step notifications meanwhile. Short, because only an answer
 * carries what the job waits for (the runner starting, storage down), and the bar should say it within moments.
 */
const WAIT_SECONDS = 2;
const ENDED = new Set(["done", "failed", "cancelled"]);

interface JobStatus extends JobUpdate {
  jobId: string;
  error?: { code: string; message: string };
}

/** `kitty-images generate "prompt" [...] [--wait]`: generate_image, then (with --wait) job_status until the end. */
export async function generateCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseCommand("generate", args, FLAGS, { min: 1, max: 1, name: 'a prompt in quotes, e.g. kitty-images generate "a red fox"' });
  // Only what was given: the tool fills in the model's defaults and checks every range itself.
  const request = Object.fromEntries(
    Object.entries({
      prompt: positionals[0],
      negative_prompt: values.negative,
      model: values.model,
      width: numberFlag("width", values.width),
      height: numberFlag("height", values.height),
      steps: numberFlag("steps", values.steps),
      cfg_scale: numberFlag("cfg", values.cfg, "number"),
      seed: numberFlag("seed", values.seed),
      scheduler: values.scheduler,
      refiner: values.refiner,
      refiner_mode: values["refiner-mode"],
      count: numberFlag("count", values.count),
      init_image: values.init,
      mask: values.mask,
      mask_blur: numberFlag("mask-blur", values["mask-blur"]),
      strength: numberFlag("strength", values.strength, "number"),
      loras: values.lora?.map(loraFlag),
    }).filter(([, value]) => value !== undefined),
  );
  await queueAndFollow("generate_image", request, values.wait ?? false, ["init_image", "mask"], values.demo ?? false);
}

/**
 * Calls a tool that queues a job (generate_image, upscale_image) and prints the job; with `wait`, follows it to the
 * end (a progress bar on a terminal), prints the finished job, and exits 1 if it did not end done.
 */
export async function queueAndFollow(tool: string, request: Record<string, unknown>, wait: boolean, imageFields: readonly string[], demo = false): Promise<void> {
  // Only a waiting command runs jobs itself, and only while no server holds the queue.
  const connection = await connect({ runWorker: wait, demo });
  try {
    for (const field of imageFields) {
      if (typeof request[field] === "string") request[field] = await imageArgument(request[field]);
    }
    const queued = await connection.call<{ jobId: string; steps?: number; count?: number; position: number }>(tool, request);
    if (!wait) {
      if (connection.inProcess) {
        process.stderr.write(`job ${queued.jobId} is queued (#${queued.position}); it runs when a kitty-images server on this data dir takes the queue (kitty-images serve), or run with --wait to make it here\n`);
      }
      printJson(queued);
      return;
    }
    // An upscale says no steps up front: the runner's first step says how many.
    // A batch's bar counts every image's steps from the start, as the runner's progress does, so it never jumps.
    const display = jobProgress((queued.steps ?? 0) * (queued.count ?? 1));
    display.show({ status: "queued", position: queued.position });
    const final = await followJob(connection, queued.jobId, display);
    // Where each image is: a path on this machine (local storage) or its download URL, beside its key.
    const images = (final as { images?: Array<{ key: string }> }).images ?? [];
    for (const image of images) {
      const { imageRef } = await connection.call<{ imageRef: { downloadUrl: string } }>("select_image", { key: image.key });
      Object.assign(image, imageRef.downloadUrl.startsWith("file:") ? { file: fileURLToPath(imageRef.downloadUrl) } : { downloadUrl: imageRef.downloadUrl });
    }
    printJson(final);
    if (process.stderr.isTTY) for (const image of images as Array<{ file?: string; downloadUrl?: string }>) process.stderr.write(`saved: ${image.file ?? image.downloadUrl}\n`);
    if (final.status !== "done") {
      process.stderr.write(`kitty-images: job ${final.jobId} ${final.status}${final.error ? `: ${final.error.code}: ${final.error.message}` : ""}\n`);
      process.exitCode = 1;
    }
  } finally {
    await connection.close();
  }
}

/**
 * An image flag as the tool takes it: a file goes as a data: URL, in this process or to a server elsewhere alike
 * (the person named it on their own command line: KITTY_IMAGES_INPUT_DIRS, which fences what an agent may read,
 * is not for them); anything else (a key, an imageRef URL) as it is.
 */
async function imageArgument(given: string): Promise<string> {
  if (/^(data|https?|s3|file):/i.test(given)) return given;
  const file = path.resolve(given);
  const info = await stat(file).catch(() => null);
  if (!info?.isFile()) return given;
  if (info.size > LIMITS.imageInput.maxBytes) throw new UsageError(`${file} is ${(info.size / 1e6).toFixed(1)} MB; an image brought in is at most ${LIMITS.imageInput.maxBytes / 1e6} MB`);
  const type = /\.jpe?g$/i.test(file) ? "image/jpeg" : /\.webp$/i.test(file) ? "image/webp" : "image/png";
  return `data:${type};base64,${(await readFile(file)).toString("base64")}`;
}

/** `--lora name` (weight 1) or `--lora name:0.8`. */
function loraFlag(raw: string): { name: string; weight: number } {
  const colon = raw.lastIndexOf(":");
  if (colon < 0) return { name: raw, weight: 1 };
  return { name: raw.slice(0, colon), weight: numberFlag("lora weight", raw.slice(colon + 1), "number")! };
}

async function followJob(connection: Connection, jobId: string, display: JobProgress): Promise<JobStatus> {
  const interrupted = new AbortController();
  const onSigint = () => interrupted.abort();
  // on, not once: execa's signal-exit re-raises a SIGINT that no other listener holds, which would kill this process before it says anything.
  process.on("SIGINT", onSigint);
  // What the job waits for comes with answers only: a step notification keeps the last one said until a step
  // passes the one it was said at (the wait is over).
  let notice: string | undefined;
  let noticeAt = 0;
  try {
    for (;;) {
      const status = await connection.call<JobStatus>("job_status", { jobId, wait_seconds: WAIT_SECONDS }, {
        onprogress: ({ progress, total }) => {
          if (progress > noticeAt) notice = undefined;
          display.show({ status: "running", progress: { step: progress, totalSteps: total ?? progress }, ...(notice && { notice }) });
        },
        timeout: (WAIT_SECONDS + 60) * 1000,
        signal: interrupted.signal,
      });
      // Notifications that arrive together with the result may be dropped: the answer's own progress fills the gap.
      notice = status.notice;
      noticeAt = status.progress?.step ?? 0;
      display.show(status);
      if (ENDED.has(status.status)) return status;
    }
  } catch (error) {
    if (!interrupted.signal.aborted) throw error;
    const where = connection.inProcess ? "it goes back to the queue now and runs when a kitty-images server on this data dir takes it" : "the server goes on with it";
    throw new StoppedWaiting(`stopped waiting for job ${jobId}; ${where} (kitty-images latest shows it once done; kitty-images cancel ${jobId} drops it)`);
  } finally {
    process.off("SIGINT", onSigint);
    display.stop();
  }
}
