// How a run that broke off ends: the one table from an error (or a stop from outside) to the job's next state.
import { messageOf, type JobErrorCode } from "../core/errors.js";
import { imageCount } from "../core/generation.js";
import type { Logger } from "../core/log.js";
import { EngineJobError } from "../engines/engine.js";
import type { StagingArea } from "../images/staging.js";
import { JobTakenOver, MAX_ATTEMPTS, type Job } from "./job.js";
import type { JobStore } from "./ports.js";

/** Why a job was stopped from outside before it ended; the abort reason of a job's signals. */
export class JobStopped extends Error {
  constructor(readonly reason: "cancelled" | "shutdown" | "lease_lost") {
    super(`job stopped: ${reason}`);
    this.name = "JobStopped";
  }
}

export interface JobSignals {
  /** Aborted by a cancel, a shutdown or a lost lease: the engine stops at its next step and uploads stop waiting. */
  stop: AbortSignal;
  /** Aborted by a shutdown or a lost lease only: recording an image already stored outlives a late cancel. */
  letGo: AbortSignal;
}

/** `engine_unavailable`: nothing ran, the job keeps its place and the loop waits before trying again. */
export type RunOutcome = "finished" | "engine_unavailable";

/** Storage refused in a way waiting will not fix (403, no such bucket, an unwritable folder). */
export class StorageRefused extends Error {}

/** What settling needs of a run's deps. */
interface SettleDeps {
  jobs: JobStore;
  staging: StagingArea;
  setNotice(notice: string | null): Promise<void>;
}

/** Maps how a run broke off to how the job goes on: back in line, a retry, cancelled or failed with a reason. */
export async function settleFailure(job: Job, error: unknown, deps: SettleDeps, signals: JobSignals, log: Logger): Promise<RunOutcome> {
  const { jobs, staging } = deps;
  // Letting go (shutdown, lease lost) outranks a cancel that came first: the job is not this process's to end.
  const reasonOf = (signal: AbortSignal) => (signal.aborted && signal.reason instanceof JobStopped ? signal.reason.reason : null);
  const stopped = reasonOf(signals.letGo) ?? reasonOf(signals.stop);
  // Put back without counting an attempt, fenced: nothing happens if the job is already someone else's.
  const putBack = () => jobs.requeue(job.id, { countAttempt: false, attempt: job.attempts });
  const fail = (code: JobErrorCode, message: string) => jobs.finish(job.id, "running", "failed", { error: { code, message }, attempt: job.attempts });

  if (error instanceof JobTakenOver || stopped === "lease_lost") {
    await putBack();
    log.warn("lease lost mid-job; the job is left to the process that holds the queue now");
  } else if (stopped === "shutdown") {
    // Not the job's fault: it keeps its retry and runs again at the next start (a staged PNG is uploaded then).
    await putBack();
    log.info("server stopping; job put back in the queue");
  } else if (stopped === "cancelled" || (error instanceof EngineJobError && error.code === "cancelled")) {
    await staging.remove(job.id);
    // A "storage is unavailable" notice belonged to this job's upload; the next job sets its own.
    await deps.setNotice(null);
    await jobs.finish(job.id, "running", "cancelled", { attempt: job.attempts });
    log.info("job cancelled");
  } else if (error instanceof EngineJobError && error.code === "engine_unavailable") {
    await putBack();
    await deps.setNotice(`the image engine is not available: ${error.message}`);
    log.warn({ reason: error.message }, "engine unavailable; job stays queued");
    return "engine_unavailable";
  } else if (error instanceof EngineJobError && error.retryable && job.attempts < MAX_ATTEMPTS) {
    await jobs.requeue(job.id, { attempt: job.attempts });
    log.warn({ error: error.message }, "engine failed mid-job; job requeued for its one retry");
  } else if (error instanceof StorageRefused) {
    // The image exists; say where, so nothing finished is lost even though storage would not take it.
    const kept = staging.keptPngs(job.id, imageCount(job.request));
    await deps.setNotice(null);
    const where = kept.length === 1 ? `; the image is kept at ${kept[0]}` : kept.length > 1 ? `; the images are kept at ${kept.join(", ")}` : "";
    await fail("storage_refused", `${error.message}${where}`);
    log.error({ error: error.message }, "job failed");
  } else if (isNoRoom(error)) {
    // Our own writes to staging (the result file, a start image): the same words as the runner's disk_full.
    await staging.remove(job.id);
    await fail("disk_full", `no room to write in ${staging.dir} (${messageOf(error)}): free space on that disk, or set KITTY_IMAGES_HOME to a folder on a disk with room; nothing was stored`);
    log.error({ error: messageOf(error) }, "job failed: disk full");
  } else {
    await staging.remove(job.id);
    await fail(error instanceof EngineJobError ? error.code : "internal_error", messageOf(error));
    log.error({ error: messageOf(error) }, "job failed");
  }
  return "finished";
}

/** A full disk or quota under Node's own file writes. */
function isNoRoom(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  return code === "ENOSPC" || code === "EDQUOT" || code === "EFBIG";
}
