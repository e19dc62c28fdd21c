import { z } from "zod";
import { FAMILIES } from "../../models/families.js";
import { isTerminal, JOB_STATES } from "../../queue/job.js";
import type { Job } from "../../queue/job.js";
import { boundedInt } from "../../core/arguments.js";
import { JOB_ERROR_CODES } from "../../core/errors.js";
import type { JobError } from "../../queue/job.js";
import { previewArgument, previewImages } from "./previewImages.js";
import { defineTool, type ToolDeps } from "./toolKit.js";

export const jobStatus = defineTool({
  name: "job_status",
  icon: "M12 3a9 9 0 1 0 .01 0zM12 7v5l3 3",
  description:
    "State, step k/n, image keys when done. wait_seconds waits up to 50 s; preview: true adds small images.",
  annotations: { readOnlyHint: true, openWorldHint: false },
  input: {
    jobId: z.string({ error: "jobId is required: the id generate_image returned" }),
    wait_seconds: boundedInt("wait_seconds", 0, 50).optional(),
    preview: previewArgument,
  },
  output: {
    jobId: z.string(),
    status: z.enum(JOB_STATES),
    position: z.number().int().optional(),
    progress: z.object({ step: z.number().int(), totalSteps: z.number().int() }).optional(),
    images: z.array(z.object({ key: z.string(), width: z.number().int(), height: z.number().int(), seed: z.number().int() })).optional(),
    promptTokens: z.number().int().optional(),
    error: z.object({ code: z.enum(JOB_ERROR_CODES), message: z.string() }).optional(),
    notice: z.string().optional(),
    model: z.string(),
    prompt: z.string(),
    // The answer also carries createdAt, startedAt and finishedAt (ISO times), left out of the schema: tools/list is
    // paid in tokens on every turn, and an agent acts on the state, not the clock.
  },
  async handler({ jobId, wait_seconds, preview }, deps, call) {
    let job = await deps.queue.get(jobId);
    if (wait_seconds && !isTerminal(job.state)) {
      job = await deps.queue.waitForEnd(jobId, wait_seconds * 1000, ({ step, totalSteps }) =>
        call.progress(step, totalSteps, `step ${step}/${totalSteps}`),
      );
    }
    const described = await describeJob(job, deps);
    if (!preview || job.state !== "done") return described;
    const shown = await previewImages(await deps.index.ofJob(job.id), deps);
    return { ...described, summary: `${described.summary}${shown.note ? ` ${shown.note}` : ""}`, images: shown.images };
  },
});

async function describeJob(job: Job, { queue, index }: ToolDeps) {
  const base = {
    jobId: job.id,
    status: job.state,
    model: job.request.model.name,
    prompt: job.request.prompt,
    createdAt: job.createdAt,
    ...(job.startedAt && { startedAt: job.startedAt }),
    ...(job.finishedAt && { finishedAt: job.finishedAt }),
  };
  const again = "Call job_status again with wait_seconds to wait for it.";
  switch (job.state) {
    case "queued": {
      const position = await queue.position(job);
      const notice = (await queue.waitingReason(job)) ?? undefined;
      return {
        structured: { ...base, position, ...(notice && { notice }) },
        summary: `Job ${job.id} is queued at position ${position}${notice ? ` (waiting: ${notice.split("\n")[0]})` : ""}. ${again}`,
      };
    }
    case "running": {
      // Before the runner's first step: every image's steps, as its progress will count them (a batch never jumps).
      const progress = job.progress ?? { step: 0, totalSteps: job.request.steps * (job.request.count ?? 1) };
      const notice = (await queue.waitingReason(job)) ?? undefined;
      return {
        structured: { ...base, progress, ...(notice && { notice }) },
        summary: `Job ${job.id} is running: step ${progress.step} of ${progress.totalSteps}${notice ? ` (${notice.split("\n")[0]})` : ""}. ${again}`,
      };
    }
    case "done": {
      const records = await index.ofJob(job.id);
      const images = records.map((image) => ({ key: image.key, width: image.width, height: image.height, seed: image.seed }));
      const promptTokens = records[0]?.metadata.promptTokens;
      const tokens = typeof promptTokens === "number" ? promptTokens : undefined;
      // Past 75 tokens the prompt was encoded in chunks: worth saying, since most tools silently drop the rest.
      const notes = records[0]?.metadata.promptNotes as { tokensDropped?: number; emphasisStripped?: boolean } | undefined;
      const family = records[0]?.metadata.family;
      const clip = family === undefined || FAMILIES[String(family)]?.prompt.encoder === "clip";
      const chunked = clip && tokens !== undefined && tokens > 75 ? ` The prompt's ${tokens} tokens were all used, encoded in 75-token chunks.` : "";
      // An encoder that takes the prompt whole stops at its limit: say what it never saw, rather than let it pass.
      const dropped = notes?.tokensDropped ? ` The last ${notes.tokensDropped} of the prompt's ${tokens} tokens were past the model's limit and not used.` : "";
      const stripped = notes?.emphasisStripped ? " Emphasis syntax such as (word:1.3) was taken out: this model cannot weight words." : "";
      return {
        structured: { ...base, images, ...(tokens !== undefined && { promptTokens: tokens }) },
        summary:
          `Job ${job.id} is done: ${images.length > 1 ? `images ${images.map((image) => image.key).join(", ")}` : `image ${images[0]?.key ?? "(missing from the index)"}`}.` +
          `${chunked}${dropped}${stripped} Next: select_image {"key":"${images[0]?.key ?? ""}"} for an imageRef.`,
      };
    }
    case "failed": {
      const error = knownError(job.error);
      return {
        structured: { ...base, error },
        summary: `Job ${job.id} failed (${error.code}): ${error.message.split("\n")[0]}`,
      };
    }
    case "cancelled":
      return { structured: base, summary: `Job ${job.id} was cancelled; it made no image.` };
  }
}

/**
 * A failed job's error as the schema lists it. A row an older release wrote may hold a code this release no longer
 * names, or none: it reads as internal_error, with the recorded code kept in the message.
 */
function knownError(error: JobError | null): JobError {
  if (!error) return { code: "internal_error", message: "no reason recorded" };
  if ((JOB_ERROR_CODES as readonly string[]).includes(error.code)) return error;
  return { code: "internal_error", message: `(recorded as ${error.code}) ${error.message}` };
}
