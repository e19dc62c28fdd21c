// Where the one worker loop (worker.ts) gets its next job. On one machine every server process shares a SQLite file
// and only the lease holder runs jobs; in a studio many GPU workers share Postgres, each taking what it can run.
import { KittyError, messageOf, JOB_ERROR_CODES, type JobErrorCode } from "../core/errors.js";
import type { GenerationRequest } from "../core/generation.js";
import type { Logger } from "../core/log.js";
import type { Job, JobError } from "./job.js";
import type { JobStore, QueueLease, WorkerCapabilities, WorkerRegistry } from "./ports.js";
import type { WorkerPresence } from "./workerPresence.js";

/** What the source tells the worker: the queue became this process's to run, or stopped being so. */
export interface SourceHooks {
  gained(): void;
  lost(): void;
}

export interface JobSource {
  start(hooks: SourceHooks): Promise<void>;
  /** The next job this process should run now; undefined when there is none for it (or the queue is not its). */
  next(): Promise<Job | undefined>;
  /** How long to wait after `next()` found nothing, unless something announces a job sooner. */
  readonly idleMs: number;
  /** True while this process may run jobs. */
  readonly holdsQueue: boolean;
  /** The job as this host runs it (its own folders), or why it cannot. */
  localize(job: Job): { job: Job } | { error: JobError };
  /** Why the queue waits (storage down, the engine not starting), for job_status in every process; null clears it. */
  setNotice(notice: string | null): Promise<void>;
  stop(): Promise<void>;
}

export interface LeasedTiming {
  /** How often an idle holder looks for jobs other processes queued (they cannot wake it). */
  queuePollMs: number;
  /** The lease's heartbeat, and how often a process that does not hold it asks again. */
  leaseHeartbeatMs: number;
}

/**
 * The SQLite queue: Claude Desktop and the KITTY agent each start their own stdio server on one data dir, and the
 * one holding the lease runs the jobs, so one GPU is never driven twice. Taking the lease recovers the jobs a dead
 * holder left running; losing it (this process stalled past its heartbeat) hands the running job back.
 */
export class LeasedJobSource implements JobSource {
  private holds = false;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private announcedFollower = false;
  private hooks: SourceHooks = { gained() {}, lost() {} };

  constructor(
    private readonly jobs: JobStore,
    private readonly lease: QueueLease,
    private readonly timing: LeasedTiming,
    private readonly log: Logger,
  ) {}

  get holdsQueue(): boolean {
    return this.holds;
  }

  get idleMs(): number {
    return this.holds ? this.timing.queuePollMs : this.timing.leaseHeartbeatMs;
  }

  async start(hooks: SourceHooks): Promise<void> {
    this.hooks = hooks;
  }

  async next(): Promise<Job | undefined> {
    if (!this.holds && !(await this.takeLease())) {
      if (!this.announcedFollower) this.log.info({ holderPid: (await this.lease.holder())?.pid }, "another process runs the queue; this one queues and answers");
      this.announcedFollower = true;
      return undefined;
    }
    const job = await this.jobs.takeNext({ leaseOwner: this.lease.owner });
    if (!job && !(await this.lease.heartbeat())) this.loseLease();
    return job;
  }

  localize(job: Job): { job: Job } {
    return { job };
  }

  async setNotice(notice: string | null): Promise<void> {
    if (this.holds) await this.lease.setNotice(notice);
  }

  async stop(): Promise<void> {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (!this.holds) return;
    try {
      await this.lease.release();
    } catch (error) {
      // Another process holds the database: the lease is found abandoned anyway (this pid is gone, or it goes stale).
      this.log.warn({ error: messageOf(error) }, "could not release the worker lease");
    }
  }

  private async takeLease(): Promise<boolean> {
    if (!(await this.lease.tryAcquire())) return false;
    // Recover first: if it throws, the loop retries the whole step and the lease row is still ours.
    const recovered = await this.jobs.recoverInterrupted();
    if (recovered.resumed.length || recovered.failed.length) this.log.warn(recovered, "jobs interrupted when the last worker stopped");
    this.holds = true;
    this.heartbeatTimer = setInterval(() => void this.heartbeat(), this.timing.leaseHeartbeatMs);
    this.heartbeatTimer.unref();
    this.log.info("this process runs the queue");
    this.hooks.gained();
    return true;
  }

  private async heartbeat(): Promise<void> {
    try {
      if (await this.lease.heartbeat()) return;
    } catch (error) {
      this.log.warn({ error: messageOf(error) }, "lease heartbeat failed; will try again");
      return;
    }
    this.loseLease();
  }

  private loseLease(): void {
    if (!this.holds) return;
    this.log.error("lost the worker lease to another process; this process stops running jobs");
    this.holds = false;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    this.hooks.lost();
  }
}

export interface SharedWorker {
  /** Who this worker is in the registry, and the models it has: it takes only jobs for those. */
  workerId: string;
  models: readonly string[];
  /** Refiners and LoRAs it has: jobs needing others stay for a worker that has them (absent: takes any). */
  can?: WorkerCapabilities;
  /** The request with this host's own folders for its model and LoRAs; throws a KittyError for what is missing. */
  localize?: (request: GenerationRequest) => GenerationRequest;
  /** Looks for jobs this often even without a notification (one lost while the channel was down). */
  queuePollMs: number;
}

/**
 * A GPU worker on the shared Postgres queue: only jobs for its models, routed by FOR UPDATE SKIP LOCKED, with no
 * lease (many workers run at once). Its presence in the registry (workerPresence.ts) heartbeats and recovers the
 * jobs of workers gone silent.
 */
export class SharedJobSource implements JobSource {
  private started = false;

  constructor(
    private readonly jobs: JobStore,
    private readonly registry: WorkerRegistry,
    private readonly presence: WorkerPresence,
    private worker: SharedWorker,
  ) {}

  get holdsQueue(): boolean {
    return this.started;
  }

  get idleMs(): number {
    return this.worker.queuePollMs;
  }

  async start(hooks: SourceHooks): Promise<void> {
    await this.presence.start();
    this.started = true;
    hooks.gained();
  }

  /** Takes jobs for these models, refiners and LoRAs from now on (what the worker advertises after a models.yaml edit). */
  offer(offer: Pick<SharedWorker, "models" | "can">): void {
    this.worker = { ...this.worker, ...offer };
  }

  next(): Promise<Job | undefined> {
    const { workerId, models, can } = this.worker;
    return this.jobs.takeNext({ workerId, models, can });
  }

  localize(job: Job): { job: Job } | { error: JobError } {
    try {
      return { job: { ...job, request: this.worker.localize?.(job.request) ?? job.request } };
    } catch (error) {
      // Retrying will not give this host the folder: the job fails with what it lacks.
      const code: JobErrorCode = error instanceof KittyError && (JOB_ERROR_CODES as readonly string[]).includes(error.code) ? (error.code as JobErrorCode) : "model_missing";
      return { error: { code, message: messageOf(error) } };
    }
  }

  setNotice(notice: string | null): Promise<void> {
    return this.registry.setNotice(this.worker.workerId, notice);
  }

  async stop(): Promise<void> {
    this.started = false;
    await this.presence.stop();
  }
}
