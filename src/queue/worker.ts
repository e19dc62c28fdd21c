import { messageOf } from "../core/errors.js";
import type { JobEvents } from "./jobEvents.js";
import type { Job } from "./job.js";
import type { JobSource } from "./jobSources.js";
import type { JobStore } from "./ports.js";
import { GrowingDelay, pause, retryWithBackoff } from "./retry.js";
import { JobStopped, type RunOutcome } from "./runEnding.js";
import { jobRunDeps, runTakenJob, type CurrentJob, type JobRunDeps, type RunObserver, type WorkerParts } from "./runJob.js";

export interface WorkerOptions extends WorkerParts {
  jobs: JobStore;
  /** Where the next job comes from: a lease on one SQLite file, or the shared Postgres queue with routing. */
  source: JobSource;
  /**
   * The changes this process hears: its own store's (SQLite), or every host's from the jobs channel (Postgres).
   * `enqueued` wakes the loop; `cancelRequested` reads the running job's mark at once.
   */
  heard: JobEvents;
  timing: WorkerParts["timing"] & {
    /** How often a running job's cancel mark is read, besides whatever announces it sooner. */
    cancelPollMs: number;
  };
}

/** After the queue is ours: start the runner soon, but not before the client's first requests are answered. */
const ENGINE_WARM_START_DELAY_MS = 300;

/**
 * The one loop that runs jobs, on either database: strictly one at a time, oldest first, taken from its source.
 * One job's run is runJob's; this file takes jobs and carries cancel, shutdown and a lost lease to the running job
 * through its abort signals.
 */
export class Worker {
  private readonly runDeps: JobRunDeps;
  private readonly stopping = new AbortController();
  private wakeUp = new AbortController();
  private starting: Promise<void> | null = null;
  private loop: Promise<void> | null = null;
  private current: CurrentJob | null = null;
  /** Notices are written one after another, so a later "nothing in the way" never lands before the notice it clears. */
  private notices: Promise<void> = Promise.resolve();
  private readonly unsubscribe: Array<() => void>;

  constructor(private readonly options: WorkerOptions) {
    const { jobs, source, heard, log } = options;
    this.runDeps = jobRunDeps(options, jobs, (notice) => {
      // Advisory: a notice the database does not take is logged, and the run goes on.
      this.notices = this.notices
        .then(() => source.setNotice(notice))
        .catch((error: unknown) => log.warn({ notice, error: messageOf(error) }, "could not update the queue's notice"));
      return this.notices;
    });
    this.unsubscribe = [heard.on("enqueued", () => this.wake()), heard.on("cancelRequested", (jobId) => void this.checkCancel(jobId))];
  }

  /**
   * Who hears each generation and storage retry from now on: /metrics, set by the HTTP door. A stdio server has
   * no /metrics, so it never loads prom-client (tens of milliseconds of start-up) for nothing.
   */
  observe(observer: RunObserver): void {
    this.runDeps.observer = observer;
  }

  /** True while this process may run the queue's jobs (it holds the SQLite lease, or is a started worker). */
  get holdsQueue(): boolean {
    return this.options.source.holdsQueue;
  }

  /** Resolves once the source is started (a Postgres worker is registered); rejects when it cannot be. */
  start(): Promise<void> {
    this.starting ??= this.options.source.start({ gained: () => this.queueGained(), lost: () => this.queueLost() }).then(() => {
      this.loop = this.run();
    });
    return this.starting;
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.current?.letGo.abort(new JobStopped("shutdown"));
    this.wake();
    await this.options.engine.stop();
    await this.starting?.catch(() => undefined);
    await this.loop;
    for (const stopListening of this.unsubscribe) stopListening();
    await this.notices;
    await this.options.source.stop();
  }

  /** The jobs channel was down: whatever was announced meanwhile is read from the rows instead. */
  channelBack(): void {
    this.wake();
    if (this.current) void this.checkCancel(this.current.job.id);
  }

  private wake(): void {
    this.wakeUp.abort();
  }

  /** Sleeps until `ms` pass, wake() is called or the worker stops, whichever is first. */
  private async idle(ms: number): Promise<void> {
    await pause(ms, AbortSignal.any([this.wakeUp.signal, this.stopping.signal]));
    if (this.wakeUp.signal.aborted) this.wakeUp = new AbortController();
  }

  private async run(): Promise<void> {
    const { source, log, timing } = this.options;
    const engineDelay = new GrowingDelay(timing.backoff);
    const databaseDelay = new GrowingDelay(timing.backoff);
    while (!this.stopping.signal.aborted) {
      try {
        const job = await source.next();
        databaseDelay.reset();
        if (!job) {
          // Other processes enqueue too, and a notice may have been lost: look again now and then.
          await this.idle(source.idleMs);
          continue;
        }
        if ((await this.runOne(job)) === "engine_unavailable") await this.idle(engineDelay.next());
        else engineDelay.reset();
      } catch (error) {
        // A database that stays busy, Postgres restarting, a full disk: the loop must not end. Wait, try again.
        const wait = databaseDelay.next();
        log.warn({ error: messageOf(error), retryInMs: wait }, "cannot take jobs from the queue; retrying");
        await this.idle(wait);
      }
    }
  }

  private async runOne(taken: Job): Promise<RunOutcome> {
    const job = await this.localized(taken);
    if (!job) return "finished";
    const current: CurrentJob = { job, cancel: new AbortController(), letGo: new AbortController() };
    this.current = current;
    try {
      if (this.stopping.signal.aborted) current.letGo.abort(new JobStopped("shutdown"));
      // cancel_job may come from any process: it marks the row, and the watch turns the mark into an abort.
      return await runTakenJob(current, this.runDeps, {
        checkCancel: () => void this.checkCancel(job.id),
        cancelPollMs: this.options.timing.cancelPollMs,
        stopRetrying: AbortSignal.any([current.letGo.signal, this.stopping.signal]),
      });
    } finally {
      this.current = null;
    }
  }

  /** The job as this host runs it; a host that lacks what it needs fails the job, since a retry will not give it that. */
  private async localized(taken: Job): Promise<Job | null> {
    const { jobs, source, log, timing } = this.options;
    const made = source.localize(taken);
    if ("job" in made) return made.job;
    log.warn({ jobId: taken.id, ...made.error }, "this worker cannot run the job it took");
    // Until the database takes it: a job left running by a live worker would never be recovered.
    await retryWithBackoff(() => jobs.finish(taken.id, "running", "failed", { error: made.error, attempt: taken.attempts }), {
      backoff: timing.backoff,
      signal: this.stopping.signal,
      giveUp: () => undefined,
      onRetry: (error, retryInMs) => log.warn({ jobId: taken.id, error: messageOf(error), retryInMs }, "could not fail the job; will retry"),
    });
    return null;
  }

  /** The one place the cancel mark is read: a running job whose row is marked is aborted. */
  private async checkCancel(jobId: string): Promise<void> {
    const current = this.current;
    if (!current || current.job.id !== jobId || current.cancel.signal.aborted) return;
    try {
      if (await this.options.jobs.isCancelRequested(jobId)) current.cancel.abort(new JobStopped("cancelled"));
    } catch (error) {
      this.options.log.warn({ jobId, error: messageOf(error) }, "could not read the cancel mark");
    }
  }

  /** This process runs the queue's jobs now: clear what a dead run left in staging, and warm the runner. */
  private queueGained(): void {
    const { engine, log } = this.options;
    void this.sweepStaging();
    // Spawning the runner competes with the client's first requests for the event loop; a job that comes sooner starts it.
    setTimeout(() => {
      if (this.holdsQueue && !this.stopping.signal.aborted) {
        engine.start().catch((error: Error) => log.warn({ error: error.message }, "engine did not start yet; jobs will wait and retry"));
      }
    }, ENGINE_WARM_START_DELAY_MS).unref();
  }

  /**
   * Another process holds the queue now (this one stalled past its lease): stop at once. The running job is put
   * back (fenced by attempt, so nothing happens if the new holder already recovered it), and the new holder loads
   * its own model on the same GPU, so the memory goes back.
   */
  private queueLost(): void {
    const { engine, log } = this.options;
    this.current?.letGo.abort(new JobStopped("lease_lost"));
    engine.release().catch((error: Error) => log.warn({ error: error.message }, "could not stop the runner"));
  }

  /**
   * A process that died between recording a job done and clearing its staged files left them behind: clear what
   * belongs to no live job. A failed job's PNG stays (storage refused it; its error says where it is kept).
   */
  private async sweepStaging(): Promise<void> {
    const { jobs, staging, log } = this.options;
    try {
      for (const jobId of await staging.jobIds()) {
        const state = (await jobs.get(jobId))?.state;
        if (state === undefined || state === "done" || state === "cancelled") await staging.remove(jobId);
      }
    } catch (error) {
      log.warn({ error: messageOf(error) }, "could not clear old staged files");
    }
  }
}
