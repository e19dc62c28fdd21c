import { z } from "zod";
import { KittyError } from "../errors.js";
import { JOB_STATES } from "../queue/jobStates.js";
import { defineTool } from "./toolKit.js";
import { findJob, waitForEnd } from "./jobStatus.js";

/** How long cancel_job waits for a running job to stop at its next denoising step. */
const RUNNING_CANCEL_WAIT_MS = 15_000;

export const cancelJob = defineTool({
  name: "cancel_job",
  title: "Cancel a job",
  description: "Cancel a queued job, or stop a running one at its next step. A finished job cannot be cancelled.",
  input: {
    jobId: z.string({ error: "jobId is required: the id generate_image returned" }).describe("The id generate_image returned."),
  },
  output: { jobId: z.string(), status: z.enum(JOB_STATES) },
  async handler({ jobId }, deps) {
    const { jobs, worker, log } = deps;
    const job = findJob(deps, jobId);
    if (job.state === "queued" && jobs.finish(jobId, "queued", "cancelled")) {
      log.info({ jobId }, "job cancelled while queued");
      worker.events.emit("ended", jobId);
    } else if (job.state === "queued" || job.state === "running") {
      // It is running (perhaps it started a moment ago): mark it; the process running it stops it at the next step.
      if (jobs.requestCancel(jobId)) await waitForEnd(deps, jobId, RUNNING_CANCEL_WAIT_MS);
    } else {
      throw new KittyError("invalid_state", `job ${jobId} is already ${job.state}; only queued or running jobs can be cancelled`);
    }
    const status = jobs.get(jobId)!.state;
    return {
      structured: { jobId, status },
      summary:
        status === "cancelled"
          ? `Job ${jobId} is cancelled.`
          : status === "running"
            ? `Job ${jobId} is still running: it stops at its next step (a model load or upload in progress finishes first). Check job_status.`
            : `Job ${jobId} ended ${status} before the cancel reached it.`,
    };
  },
});
