import { KittyError, messageOf } from "../core/errors.js";
import type { GenerationRequest } from "../core/generation.js";
import type { PgImageIndex } from "../db/postgres/images.js";
import type { JobEventName } from "./jobEvents.js";
import type { Job } from "../db/sqlite/jobs.js";
import type { PgJobStore, WorkerCapabilities } from "../db/postgres/jobs.js";
import { GrowingDelay, pause, retryWithBackoff } from "./retry.js";
import { jobRunDeps, JobStopped, runTakenJob, type CurrentJob, type JobRunDeps, type RunObserver, type RunOutcome, type WorkerParts } from "./runJob.js";
import { pgRunStore } from "./runJobStore.js";

export interface PgWorkerOptions extends WorkerParts {
  jobs: PgJobStore;
  index: PgImageIndex;
  /** Who this worker is in the registry, and the models it has: it takes only jobs for those. */
  workerId: string;
  models: readonly string[];
  /** Refiners and LoRAs it has: jobs needing others stay for a worker that has them (absent: takes any). */
  can?: WorkerCapabilities;
  /** The job's request with this host's own folders for its model and LoRAs (localizeRequest); throws what is missing. */
  localize?: (request: GenerationRequest) => GenerationRequest;
  timing: WorkerParts["timing"] & {
    /** Looks for jobs this often even without a notification (one lost while the channel was down). */
    queuePollMs: number;
    /** Reads the running job's cancel mark this often, besides hearing it on the channel. */
    cancelPollMs: number;
  };
}

/**
 * A GPU worker on the shared Postgres queue: one job at a time, only jobs for its models, woken by the jobs channel
 * (feed it PgJobListener's events) and polling slowly besides. One job's run is runJob's, as on SQLite; there is no
 * lease (many workers run at once) and recovery belongs to PgWorkerPresence.
 */
export class PgWorker {
  private readonly runDeps: JobRunDeps;
  private stopping = new AbortController();
  private wakeUp = new AbortController();
  private loop: Promise<void> | null = null;
  private current: CurrentJob | null = null;
  /** Notices are written one after another, so a later "nothing in the way" never lands before the notice it clears. */
  private notices: Promise<void> = Promise.resolve();

  constructor(private readonly options: PgWorkerOptions) {
    const { jobs, index, log } = options;
    this.runDeps = jobRunDeps(options, pgRunStore(jobs, index), (notice) => {
      // Advisory, like SQLite's: a notice the database does not take is logged, and the run goes on.
      this.notices = this.notices
        .then(() => jobs.setWorkerNotice(options.workerId, notice))
        .catch((error: unknown) => log.warn({ notice, error: messageOf(error) }, "could not record this worker's notice"));
    });
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Many workers share a Postgres queue: a started one takes its models' jobs, with no lease to hold. */
  get holdsQueue(): boolean {
    return this.loop !== null && !this.stopping.signal.aborted;
  }

  /** Who hears each generation and storage retry from now on (/metrics of `serve --http --worker`). */
  observe(observer: RunObserver): void {
    this.runDeps.observer = observer;
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.current?.letGo.abort(new JobStopped("shutdown"));
    this.wakeUp.abort();
    await this.options.engine.stop();
    await this.loop;
    await this.notices;
  }

  /** A change heard on the jobs channel (from any host). */
  heard(name: JobEventName, jobId: string): void {
    if (name === "enqueued") this.wakeUp.abort();
    else if (name === "cancelRequested") void this.checkCancel(jobId);
  }

  /** The channel was down: whatever was announced meanwhile is read from the rows instead. */
  channelBack(): void {
    this.wakeUp.abort();
    if (this.current) void this.checkCancel(this.current.job.id);
  }

  private async run(): Promise<void> {
    const { jobs, log, timing, workerId, models } = this.options;
    const engineDelay = new GrowingDelay(timing.backoff);
    const databaseDelay = new GrowingDelay(timing.backoff);
    while (!this.stopping.signal.aborted) {
      try {
        const job = await jobs.takeNext(workerId, models, this.options.can);
        databaseDelay.reset();
        if (!job) {
          await this.idle(timing.queuePollMs);
          continue;
        }
        if ((await this.runOne(job)) === "engine_unavailable") await this.idle(engineDelay.next());
        else engineDelay.reset();
      } catch (error) {
        // Postgres restarting or out of reach: back off and try again (a restart takes seconds); the pool reconnects.
        const wait = databaseDelay.next();
        log.warn({ error: messageOf(error), retryInMs: wait }, "cannot take jobs from Postgres; retrying");
        await this.idle(wait);
      }
    }
  }

  private async idle(ms: number): Promise<void> {
    await pause(ms, AbortSignal.any([this.wakeUp.signal, this.stopping.signal]));
    if (this.wakeUp.signal.aborted) this.wakeUp = new AbortController();
  }

  private async runOne(taken: Job): Promise<RunOutcome> {
    let job = taken;
    try {
      job = { ...taken, request: this.options.localize?.(taken.request) ?? taken.request };
    } catch (error) {
      // Retrying will not give this host the folder: fail the job with what it lacks.
      const reason = error instanceof KittyError ? { code: error.code, message: error.message } : { code: "model_missing", message: messageOf(error) };
      const { jobs, log, timing } = this.options;
      log.warn({ jobId: taken.id, ...reason }, "this worker cannot run the job it took");
      // Until the database takes it: a job left running by a live worker would never be recovered.
      await retryWithBackoff(() => jobs.finish(taken.id, "running", "failed", { error: reason, attempt: taken.attempts }), {
        backoff: timing.backoff,
        signal: this.stopping.signal,
        giveUp: () => undefined,
        onRetry: (retryError, retryInMs) => log.warn({ jobId: taken.id, error: messageOf(retryError), retryInMs }, "could not fail the job; will retry"),
      });
      return "finished";
    }
    const current: CurrentJob = { job, cancel: new AbortController(), letGo: new AbortController() };
    this.current = current;
    try {
      if (this.stopping.signal.aborted) current.letGo.abort(new JobStopped("shutdown"));
      return await runTakenJob(current, this.runDeps, { checkCancel: () => void this.checkCancel(job.id), cancelPollMs: this.options.timing.cancelPollMs, stopRetrying: this.stopping.signal });
    } finally {
      this.current = null;
    }
  }

  private async checkCancel(jobId: string): Promise<void> {
    const current = this.current;
    if (!current || current.job.id !== jobId || current.cancel.signal.aborted) return;
    try {
      if (await this.options.jobs.isCancelRequested(jobId)) current.cancel.abort(new JobStopped("cancelled"));
    } catch (error) {
      this.options.log.warn({ jobId, error: messageOf(error) }, "could not read the cancel mark");
    }
  }
}
