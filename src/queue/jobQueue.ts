import { KittyError } from "../errors.js";
import type { GenerationProgress, GenerationRequest } from "../generation.js";
import { isTerminal, type JobState } from "./jobStates.js";
import type { Job, JobStore } from "./jobStore.js";
import { pause } from "./retry.js";
import type { WorkerLease } from "./workerLease.js";

/** How often a waiter re-reads a job that another process runs (this process's own jobs announce their end). */
const END_POLL_MS = 250;
/** How long cancel waits for a running job to stop at its next denoising step. */
const RUNNING_CANCEL_WAIT_MS = 15_000;

/**
 * The queue as the doors (MCP tools today; REST and the CLI later) see it: enqueue, look up, wait, cancel.
 * They never reach the worker or an engine; the worker learns of new jobs and cancels through the store's events
 * (this process) or by reading the rows (other processes on the same data dir).
 */
export class JobQueue {
  constructor(
    private readonly jobs: JobStore,
    private readonly lease: WorkerLease,
  ) {}

  enqueue(request: GenerationRequest): { job: Job; position: number } {
    const job = this.jobs.enqueue(request);
    return { job, position: this.jobs.position(job) };
  }

  /** The job, or undefined when there is none with this id. */
  find(jobId: string): Job | undefined {
    return this.jobs.get(jobId);
  }

  /** The job; a not_found error that says where ids come from when there is none. */
  get(jobId: string): Job {
    const job = this.jobs.get(jobId);
    if (!job) throw new KittyError("not_found", `no job with id '${jobId}'; use the jobId that generate_image returned`);
    return job;
  }

  counts(): Record<JobState, number> {
    return this.jobs.countByState();
  }

  /** What is running and what waits (up to `queuedLimit`), in the order it runs: the gallery's job strip, /metrics. */
  active(queuedLimit: number): Job[] {
    return this.jobs.active(queuedLimit);
  }

  /** 1 = next to run; only meaningful for a queued job. */
  position(job: Job): number {
    return this.jobs.position(job);
  }

  /** Why the queue is waiting (the engine will not start, storage is down), as the process running it said. */
  waitingReason(): string | null {
    return this.lease.holder()?.notice ?? null;
  }

  /**
   * The job once it has ended, or as it stands when `timeoutMs` has passed; sees jobs run by other processes too.
   * `onProgress` hears each new step while it waits.
   */
  async waitForEnd(jobId: string, timeoutMs: number, onProgress?: (progress: GenerationProgress) => void): Promise<Job> {
    const deadline = Date.now() + timeoutMs;
    // Jobs this process runs announce each step and their end; others' are seen at the next look.
    let changed = new AbortController();
    const wake = (changedId: string) => changedId === jobId && changed.abort();
    const stopListening = [this.jobs.events.on("ended", wake), ...(onProgress ? [this.jobs.events.on("progress", wake)] : [])];
    let lastStep = -1;
    try {
      for (;;) {
        const job = this.get(jobId);
        const left = deadline - Date.now();
        // Only forward: a retried run starts again from step 1, and progress must never go back.
        if (job.progress && job.progress.step > lastStep && job.state === "running") {
          lastStep = job.progress.step;
          onProgress?.(job.progress);
        }
        if (isTerminal(job.state) || left <= 0) return job;
        await pause(Math.min(left, END_POLL_MS), changed.signal);
        if (changed.signal.aborted) changed = new AbortController();
      }
    } finally {
      for (const stop of stopListening) stop();
    }
  }

  /**
   * Drops a queued job, or marks a running one and waits a little for the process running it to stop it at its
   * next step. Returns the job as it stands then (still `running` when the step outlasts the wait).
   */
  async cancel(jobId: string): Promise<Job> {
    const job = this.get(jobId);
    if (isTerminal(job.state)) {
      throw new KittyError("invalid_state", `job ${jobId} is already ${job.state}; only queued or running jobs can be cancelled`);
    }
    if (job.state === "queued" && this.jobs.finish(jobId, "queued", "cancelled")) return this.get(jobId);
    // It is running (perhaps it started a moment ago): mark it; the process running it stops it at the next step.
    if (this.jobs.requestCancel(jobId)) return this.waitForEnd(jobId, RUNNING_CANCEL_WAIT_MS);
    return this.get(jobId);
  }
}
