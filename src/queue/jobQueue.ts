import { KittyError } from "../core/errors.js";
import type { GenerationProgress, GenerationRequest } from "../core/generation.js";
import { isTerminal, type Job, type JobState } from "./job.js";
import type { JobEvents } from "./jobEvents.js";
import type { JobStore } from "./ports.js";
import { pause } from "./retry.js";

/** How the doors learn of changes, on top of the store. */
export interface QueueWatch {
  /** Changes as soon as they are known: this process's own (SQLite), or every host's from the jobs channel (Postgres). */
  events: JobEvents;
  /** How often waiters re-read the row for the changes nobody announces to this process. */
  pollMs: number;
  /** Why `job` waits, when something is known to stand in its way (the engine will not start, no worker has its model). */
  waitingReason(job: Job): Promise<string | null>;
}

/** How long cancel waits for a running job to stop at its next denoising step. */
const RUNNING_CANCEL_WAIT_MS = 15_000;

/**
 * The queue as the doors (MCP tools, REST, the gallery, the CLI) see it: enqueue, look up, wait, cancel. They
 * never reach a worker or an engine; workers learn of new jobs and cancels through the store (events in this
 * process, the jobs channel across Postgres hosts, the rows themselves for other processes on one SQLite file).
 */
export class JobQueue {
  constructor(
    private readonly jobs: JobStore,
    private readonly watch: QueueWatch,
  ) {}

  async enqueue(request: GenerationRequest): Promise<{ job: Job; position: number }> {
    const job = await this.jobs.enqueue(request);
    return { job, position: await this.jobs.position(job) };
  }

  /** The job, or undefined when there is none with this id. */
  async find(jobId: string): Promise<Job | undefined> {
    return this.jobs.get(jobId);
  }

  /** The job; a not_found error that says where ids come from when there is none. */
  async get(jobId: string): Promise<Job> {
    const job = await this.jobs.get(jobId);
    if (!job) throw new KittyError("not_found", `no job with id '${jobId}'; use the jobId that generate_image returned`);
    return job;
  }

  async counts(): Promise<Record<JobState, number>> {
    return this.jobs.countByState();
  }

  /** What is running and what waits (up to `queuedLimit`), in the order it runs: the gallery's job strip, /metrics. */
  async active(queuedLimit: number): Promise<Job[]> {
    return this.jobs.active(queuedLimit);
  }

  /** 1 = next to run; only meaningful for a queued job. */
  async position(job: Job): Promise<number> {
    return this.jobs.position(job);
  }

  /** Why the job waits (the engine will not start, storage is down, no worker has its model), when anything is known. */
  async waitingReason(job: Job): Promise<string | null> {
    return this.watch.waitingReason(job);
  }

  /**
   * The job once it has ended, or as it stands when `timeoutMs` has passed; sees jobs run by other processes and
   * hosts too. `onProgress` hears each new step while it waits.
   */
  async waitForEnd(jobId: string, timeoutMs: number, onProgress?: (progress: GenerationProgress) => void): Promise<Job> {
    const deadline = Date.now() + timeoutMs;
    // Announced changes wake the wait at once; the poll covers changes nobody announced to this process.
    let changed = new AbortController();
    const wake = (changedId: string) => changedId === jobId && changed.abort();
    const { events, pollMs } = this.watch;
    const stopListening = [events.on("ended", wake), ...(onProgress ? [events.on("progress", wake)] : [])];
    let lastStep = -1;
    try {
      for (;;) {
        const job = await this.get(jobId);
        const left = deadline - Date.now();
        // Only forward: a retried run starts again from step 1, and progress must never go back.
        if (job.progress && job.progress.step > lastStep && job.state === "running") {
          lastStep = job.progress.step;
          onProgress?.(job.progress);
        }
        if (isTerminal(job.state) || left <= 0) return job;
        await pause(Math.min(left, pollMs), changed.signal);
        if (changed.signal.aborted) changed = new AbortController();
      }
    } finally {
      for (const stop of stopListening) stop();
    }
  }

  /**
   * Drops a queued job, or marks a running one and waits a little for the worker running it (in this process or on
   * another host) to stop it at its next step. Returns the job as it stands then (still `running` when the step
   * outlasts the wait).
   */
  async cancel(jobId: string): Promise<Job> {
    const job = await this.get(jobId);
    if (isTerminal(job.state)) {
      throw new KittyError("invalid_state", `job ${jobId} is already ${job.state}; only queued or running jobs can be cancelled`);
    }
    if (job.state === "queued" && (await this.jobs.finish(jobId, "queued", "cancelled"))) return this.get(jobId);
    // It is running (perhaps it started a moment ago): mark it; the worker running it stops it at the next step.
    if (await this.jobs.requestCancel(jobId)) return this.waitForEnd(jobId, RUNNING_CANCEL_WAIT_MS);
    return this.get(jobId);
  }
}
