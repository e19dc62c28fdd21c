import { z } from "zod";
import { JOB_STATES } from "../../queue/job.js";
import { defineTool } from "./toolKit.js";

export const cancelJob = defineTool({
  name: "cancel_job",
  icon: "M12 3a9 9 0 1 0 .01 0zM9 9l6 6M15 9l-6 6",
  description: "Cancel a queued job, or stop a running one at its next step.",
  annotations: { destructiveHint: true, idempotentHint: true, openWorldHint: false },
  input: {
    jobId: z.string({ error: "jobId is required: the id generate_image returned" }),
  },
  output: { jobId: z.string(), status: z.enum(JOB_STATES) },
  async handler({ jobId }, { queue, log }) {
    const { state: status } = await queue.cancel(jobId);
    log.info({ jobId, status }, "cancel requested");
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
