import { messageOf } from "../core/errors.js";
import type { ImageIndex } from "../db/sqlite/images.js";
import type { Job, JobStore } from "../db/sqlite/jobs.js";
import { GrowingDelay } from "./retry.js";
import { jobRunDeps, JobStopped, runTakenJob, type CurrentJob, type JobRunDeps, type RunObserver, type RunOutcome, type WorkerParts } from "./runJob.js";
import { sqliteRunStore } from "./runJobStore.js";
import type { WorkerLease } from "../db/sqlite/lease.js";

export interface WorkerOptions extends WorkerParts {
  jobs: JobStore;
  lease: WorkerLease;
  index: ImageIndex;
  timing: WorkerParts["timing"] & {
    /** How often an idle worker looks for jobs other processes queued. */
    queuePollMs: number;
    /** How often a running job's cancel mark is read (a cancel from this process is seen at once). */
    cancelPollMs: number;
    leaseHeartbeatMs: number;
  };
}

const ENGINE_WARM_START_DELAY_MS = 300;


/**
 * The one loop that runs jobs: strictly one at a time, oldest first, in the one process holding the lease.
 * One job's run is runJob's; this file takes the lease, takes jobs, and carries cancel, shutdown and lease loss
 * to the running job through its abort signals.
 */
export class Worker {
  private readonly runDeps: JobRunDeps;
  private wakeUp: (() => void) | null = null;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private holdsLease = false;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private current: CurrentJob | null = null;
  private readonly unsubscribe: Array<() => void>;

  constructor(private readonly options: WorkerOptions) {
    const { jobs, index } = options;
    this.runDeps = jobRunDeps(options, sqliteRunStore(jobs, index), (notice) => this.setNotice(notice));
    this.unsubscribe = [
      jobs.events.on("enqueued", () => this.wake()),
      jobs.events.on("cancelRequested", (jobId) => this.checkCancel(jobId)),
    ];
  }

  /**
   * Who hears each generation and storage retry from now on: /metrics, set by the HTTP door. A stdio server has
   * no /metrics, so it never loads prom-client (tens of milliseconds of start-up) for nothing.
   */
  observe(observer: RunObserver): void {
    this.runDeps.observer = observer;
  }

  /** True while this process holds the worker lease: it is the one running the queue's jobs. */
  get holdsQueue(): boolean {
    return this.holdsLease;
  }

  start(): void {
    this.loop ??= this.run();
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.current?.letGo.abort(new JobStopped("shutdown"));
    this.wake();
    await this.options.engine.stop();
    await this.loop;
    for (const stopListening of this.unsubscribe) stopListening();
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (!this.holdsLease) return;
    try {
      this.options.lease.release();
    } catch (error) {
      // Another process holds the database: the lease is found abandoned anyway (this pid is gone, or it goes stale).
      this.options.log.warn({ error: messageOf(error) }, "could not release the worker lease");
    }
  }

  private wake(): void {
    this.wakeUp?.();
  }

  /** Sleeps until `ms` pass or wake() is called, whichever is first. */
  private idle(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wakeUp = () => {
        clearTimeout(timer);
        resolve();
      };
    }).finally(() => {
      this.wakeUp = null;
    });
  }

  private setNotice(notice: string | null): void {
    if (this.holdsLease) this.options.lease.setNotice(notice);
  }

  private async run(): Promise<void> {
    const { jobs, lease, log, timing } = this.options;
    const engineDelay = new GrowingDelay(timing.backoff);
    let announcedFollower = false;
    while (!this.stopping) {
      try {
        if (!this.holdsLease && !this.takeLease()) {
          if (!announcedFollower) log.info({ holderPid: lease.holder()?.pid }, "another process runs the queue; this one queues and answers");
          announcedFollower = true;
          await this.idle(timing.leaseHeartbeatMs);
          continue;
        }
        const job = jobs.takeNext(lease.owner);
        if (!job && !lease.heartbeat()) {
          this.loseLease();
          continue;
        }
        if (!job) {
          // Other processes enqueue too and cannot wake this one: look again now and then.
          await this.idle(timing.queuePollMs);
          continue;
        }
        if ((await this.runOne(job)) === "engine_unavailable") await this.idle(engineDelay.next());
        else engineDelay.reset();
      } catch (error) {
        // A database that stays busy or a full disk must not end the loop: log, wait, try again.
        log.error({ error: messageOf(error) }, "worker loop failed; retrying");
        if (this.stopping) break;
        await this.idle(timing.backoff.max);
      }
    }
  }

  private async runOne(job: Job): Promise<RunOutcome> {
    const current: CurrentJob = { job, cancel: new AbortController(), letGo: new AbortController() };
    this.current = current;
    try {
      // cancel_job may come from any process: it marks the row, and the watch turns the mark into an abort.
      return await runTakenJob(current, this.runDeps, { checkCancel: () => this.checkCancel(job.id), cancelPollMs: this.options.timing.cancelPollMs, stopRetrying: current.letGo.signal });
    } finally {
      this.current = null;
    }
  }

  /** The one place the cancel mark is read: a running job whose row is marked is aborted. */
  private checkCancel(jobId: string): void {
    const current = this.current;
    if (!current || current.job.id !== jobId || current.cancel.signal.aborted) return;
    try {
      if (this.options.jobs.isCancelRequested(jobId)) current.cancel.abort(new JobStopped("cancelled"));
    } catch (error) {
      this.options.log.warn({ jobId, error: messageOf(error) }, "could not read the cancel mark");
    }
  }

  /** Becomes the one process that runs jobs from this queue, or returns false when another holds the lease. */
  private takeLease(): boolean {
    const { jobs, lease, engine, log, timing } = this.options;
    if (!lease.tryAcquire()) return false;
    // Recover first: if it throws, the loop retries the whole step and the lease row is still ours.
    const recovered = jobs.recoverInterrupted();
    if (recovered.resumed.length || recovered.failed.length) log.warn(recovered, "jobs interrupted when the last worker stopped");
    this.holdsLease = true;
    this.heartbeatTimer = setInterval(() => this.heartbeat(), timing.leaseHeartbeatMs);
    this.heartbeatTimer.unref();
    log.info("this process runs the queue");
    void this.sweepStaging();
    // Start the runner soon, so the first job does not pay for importing torch, but not before the client's first
    // requests are answered: spawning it competes with them for the event loop. A job that comes sooner starts it.
    setTimeout(() => {
      if (this.holdsLease && !this.stopping) {
        engine.start().catch((error: Error) => log.warn({ error: error.message }, "engine did not start yet; jobs will wait and retry"));
      }
    }, ENGINE_WARM_START_DELAY_MS).unref();
    return true;
  }

  /**
   * A process that died between recording a job done and clearing its staged files left them behind: clear what
   * belongs to no live job. A failed job's PNG stays (storage refused it; its error says where it is kept).
   */
  private async sweepStaging(): Promise<void> {
    const { jobs, staging, log } = this.options;
    try {
      for (const jobId of await staging.jobIds()) {
        const state = jobs.get(jobId)?.state;
        if (state === undefined || state === "done" || state === "cancelled") await staging.remove(jobId);
      }
    } catch (error) {
      log.warn({ error: messageOf(error) }, "could not clear old staged files");
    }
  }

  private heartbeat(): void {
    try {
      if (this.options.lease.heartbeat()) return;
    } catch (error) {
      this.options.log.warn({ error: messageOf(error) }, "lease heartbeat failed; will try again");
      return;
    }
    this.loseLease();
  }

  /**
   * This process stalled (a sleeping laptop, a stopped debugger) and another took over: stop at once. The job it
   * was running is put back (fenced by attempt, so nothing happens if the new holder already recovered it).
   */
  private loseLease(): void {
    const { engine, log } = this.options;
    log.error("lost the worker lease to another process; this process stops running jobs");
    this.holdsLease = false;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    this.current?.letGo.abort(new JobStopped("lease_lost"));
    // The new holder loads its own model on the same GPU: give the memory back.
    engine.release().catch((error: Error) => log.warn({ error: error.message }, "could not stop the runner"));
  }
}
