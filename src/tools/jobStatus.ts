import { z } from "zod";
import { KittyError } from "../errors.js";
import { isTerminal, JOB_STATES } from "../queue/jobStates.js";
import type { Job } from "../queue/jobStore.js";
import { boundedInt, defineTool, type ToolDeps } from "./toolKit.js";

const END_POLL_MS = 250;

export const jobStatus = defineTool({
  name: "job_status",
  title: "Job status",
  description:
    "Report a generation job: queued (with its position), running (step k of n), done (with its image key), failed " +
    "(with the reason) or cancelled. With wait_seconds it waits up to that long and returns as soon as the job ends.",
  input: {
    jobId: z.string({ error: "jobId is required: the id generate_image returned" }).describe("The id generate_image returned."),
    wait_seconds: boundedInt("wait_seconds", 0, 50, "Wait up to this long for the job to end (0 = answer now).").optional(),
  },
  output: {
    jobId: z.string(),
    status: z.enum(JOB_STATES),
    position: z.number().int().optional(),
    progress: z.object({ step: z.number().int(), totalSteps: z.number().int() }).optional(),
    images: z.array(z.object({ key: z.string(), width: z.number().int(), height: z.number().int(), seed: z.number().int() })).optional(),
    error: z.object({ code: z.string(), message: z.string() }).optional(),
    notice: z.string().optional(),
    model: z.string(),
    prompt: z.string(),
    createdAt: z.string(),
    startedAt: z.string().optional(),
    finishedAt: z.string().optional(),
  },
  async handler({ jobId, wait_seconds }, deps) {
    let job = findJob(deps, jobId);
    if (wait_seconds && !isTerminal(job.state)) {
      await waitForEnd(deps, jobId, wait_seconds * 1000);
      job = findJob(deps, jobId);
    }
    return describeJob(job, deps);
  },
});

export function findJob({ jobs }: ToolDeps, jobId: string): Job {
  const job = jobs.get(jobId);
  if (!job) throw new KittyError("not_found", `no job with id '${jobId}'; use the jobId that generate_image returned`);
  return job;
}

/** Resolves when the job reaches a terminal state or `timeoutMs` passes; sees jobs run by other processes too. */
export async function waitForEnd({ worker, jobs }: ToolDeps, jobId: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let wake: () => void = () => {};
  const onEnded = (endedId: string) => {
    if (endedId === jobId) wake();
  };
  worker.events.on("ended", onEnded);
  try {
    for (;;) {
      const job = jobs.get(jobId);
      const left = deadline - Date.now();
      if (!job || isTerminal(job.state) || left <= 0) return;
      // This process's worker announces the end at once; another process's is seen at the next look.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, END_POLL_MS));
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } finally {
    worker.events.off("ended", onEnded);
  }
}

function describeJob(job: Job, { jobs, worker, index }: ToolDeps) {
  const base = {
    jobId: job.id,
    status: job.state,
    model: job.request.model.name,
    prompt: job.request.prompt,
    createdAt: job.createdAt,
    ...(job.startedAt && { startedAt: job.startedAt }),
    ...(job.finishedAt && { finishedAt: job.finishedAt }),
  };
  switch (job.state) {
    case "queued": {
      const position = jobs.position(job);
      const notice = worker.waitingReason() ?? undefined;
      return {
        structured: { ...base, position, ...(notice && { notice }) },
        summary: `Job ${job.id} is queued at position ${position}${notice ? ` (waiting: ${notice.split("\n")[0]})` : ""}. Call job_status again with wait_seconds to wait for it.`,
      };
    }
    case "running": {
      const progress = job.progress ?? { step: 0, totalSteps: job.request.steps };
      const notice = worker.waitingReason() ?? undefined;
      return {
        structured: { ...base, progress, ...(notice && { notice }) },
        summary: `Job ${job.id} is running: step ${progress.step} of ${progress.totalSteps}${notice ? ` (${notice.split("\n")[0]})` : ""}. Call job_status again with wait_seconds to wait for it.`,
      };
    }
    case "done": {
      const image = index.byJob(job.id);
      const images = image ? [{ key: image.key, width: image.width, height: image.height, seed: image.seed }] : [];
      return {
        structured: { ...base, images },
        summary: `Job ${job.id} is done: image ${images[0]?.key ?? "(missing from the index)"}. Next: select_image {"key":"${images[0]?.key ?? ""}"} for an imageRef.`,
      };
    }
    case "failed": {
      const error = job.error ?? { code: "unknown", message: "no reason recorded" };
      return {
        structured: { ...base, error },
        summary: `Job ${job.id} failed (${error.code}): ${error.message.split("\n")[0]}`,
      };
    }
    case "cancelled":
      return { structured: base, summary: `Job ${job.id} was cancelled; it made no image.` };
  }
}
