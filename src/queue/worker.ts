import { EventEmitter } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Db } from "../db.js";
import type { Engine, GenerationResult } from "../engines/engine.js";
import { EngineJobError } from "../engines/engine.js";
import { S3ServiceException } from "@aws-sdk/client-s3";
import { messageOf } from "../errors.js";
import type { Logger } from "../log.js";
import type { ImageIndex } from "../storage/imageIndex.js";
import { newImageKey } from "../storage/imageKeys.js";
import type { ImageStore } from "../storage/imageStore.js";
import { MAX_ATTEMPTS } from "./jobStates.js";
import type { Job, JobStore } from "./jobStore.js";
import type { WorkerLease } from "./workerLease.js";

export interface WorkerOptions {
  stagingDir: string;
  keyPrefix: string;
  engineName: string;
  /** Backoff bounds for an engine that will not start and for storage that will not take the image. */
  retryDelayMs: { first: number; max: number };
  /** How often an idle worker looks for jobs other processes queued. */
  queuePollMs: number;
  /** How often a running job's cancel mark is checked. */
  cancelPollMs: number;
  leaseHeartbeatMs: number;
}

/** The JSON stored beside each PNG. */
export interface ImageSidecar {
  key: string;
  jobId: string;
  createdAt: string;
  engine: string;
  model: string;
  family: string;
  request: Omit<Job["request"], "model"> & { model: string };
  seed: number;
  width: number;
  height: number;
  scheduler: string;
  device: string;
  versions: Record<string, string>;
  timings: GenerationResult["timings"];
  /** Pipelines the runner had loaded in its life when it made this image: stays 1 while the model is kept warm. */
  modelLoads: number;
  /** Denoising steps that ran, base and refiner together. */
  stepsRun: number;
}

/** The job is no longer this worker's: it lost the lease and another process has taken the job over. */
class JobTakenOver extends Error {}

/** Storage refused in a way waiting will not fix (a missing file, 403, no such bucket). */
class StorageRefused extends Error {}

/** S3 refusals that waiting will not fix; anything else (timeouts, 5xx, SlowDown, RequestTimeout) is retried. */
const PERMANENT_S3_ERRORS = new Set([
  "AccessDenied",
  "AllAccessDisabled",
  "InvalidAccessKeyId",
  "SignatureDoesNotMatch",
  "NoSuchBucket",
  "InvalidBucketName",
  "AccountProblem",
  "EntityTooLarge",
]);

function isPermanentStorageError(error: unknown): boolean {
  if (error instanceof S3ServiceException) return PERMANENT_S3_ERRORS.has(error.name);
  // local file errors: the staged PNG is gone or unreadable, the target folder unwritable
  const code = (error as NodeJS.ErrnoException)?.code;
  return code === "ENOENT" || code === "EACCES" || code === "EISDIR" || code === "ENOTDIR" || code === "EROFS";
}

/**
 * The one loop that runs jobs: strictly one at a time, oldest first, in the one process holding the lease.
 * A finished image is kept in the staging folder until storage has it and the index says so; a restart
 * that finds it there uploads it instead of generating again.
 */
export class Worker {
  /** Emits "ended" with the jobId when a job this process ran reaches a terminal state. */
  readonly events = new EventEmitter();
  private wakeUp: (() => void) | null = null;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private holdsLease = false;
  private heartbeatTimer: NodeJS.Timeout | null = null;
  private current: { job: Job; takenOver: boolean } | null = null;

  constructor(
    private readonly db: Db,
    private readonly jobs: JobStore,
    private readonly engine: Engine,
    private readonly store: ImageStore,
    private readonly index: ImageIndex,
    private readonly lease: WorkerLease,
    private readonly options: WorkerOptions,
    private readonly log: Logger,
  ) {
    this.events.setMaxListeners(0);
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Called after enqueue; the loop sleeps while the queue is empty. */
  wake(): void {
    this.wakeUp?.();
  }

  /** Why the queue is waiting, as the process running it last said; every server process reads the same. */
  waitingReason(): string | null {
    return this.lease.holder()?.notice ?? null;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    this.wake();
    await this.engine.stop();
    await this.loop;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    if (this.holdsLease) this.lease.release();
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
    if (this.holdsLease) this.lease.setNotice(notice);
  }

  /** Becomes the one process that runs jobs from this queue, or returns false when another holds the lease. */
  private takeLease(): boolean {
    if (!this.lease.tryAcquire()) return false;
    // Recover first: if it throws, the loop retries the whole step and the lease row is still ours.
    const recovered = this.jobs.recoverInterrupted();
    if (recovered.resumed.length || recovered.failed.length) this.log.warn(recovered, "jobs interrupted when the last worker stopped");
    this.holdsLease = true;
    this.heartbeatTimer = setInterval(() => this.heartbeat(), this.options.leaseHeartbeatMs);
    this.heartbeatTimer.unref();
    this.log.info("this process runs the queue");
    // Start the runner now so the first job does not pay for importing torch; failures are retried per job.
    this.engine.start().catch((error: Error) => this.log.warn({ error: error.message }, "engine did not start yet; jobs will wait and retry"));
    return true;
  }

  private heartbeat(): void {
    try {
      if (this.lease.heartbeat()) return;
    } catch (error) {
      this.log.warn({ error: messageOf(error) }, "lease heartbeat failed; will try again");
      return;
    }
    this.loseLease();
  }

  /**
   * This process stalled (a sleeping laptop, a stopped debugger) and another took over: stop at once. The job it
   * was running is put back (fenced by attempt, so nothing happens if the new holder already recovered it).
   */
  private loseLease(): void {
    this.log.error("lost the worker lease to another process; this process stops running jobs");
    this.holdsLease = false;
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
    if (this.current) {
      this.current.takenOver = true;
      this.engine.cancel(this.current.job.id);
    }
    // The new holder loads its own model on the same GPU: give the memory back.
    this.engine.release().catch((error: Error) => this.log.warn({ error: error.message }, "could not stop the runner"));
  }

  private async run(): Promise<void> {
    let engineDelay = this.options.retryDelayMs.first;
    let announcedFollower = false;
    while (!this.stopping) {
      try {
        if (!this.holdsLease && !this.takeLease()) {
          if (!announcedFollower) this.log.info({ holderPid: this.lease.holder()?.pid }, "another process runs the queue; this one queues and answers");
          announcedFollower = true;
          await this.idle(this.options.leaseHeartbeatMs);
          continue;
        }
        const job = this.jobs.takeNext(this.lease.owner);
        if (!job && !this.lease.heartbeat()) {
          this.loseLease();
          continue;
        }
        if (!job) {
          // Other processes enqueue too and cannot wake this one: look again now and then.
          await this.idle(this.options.queuePollMs);
          continue;
        }
        if ((await this.runJob(job)) === "engine_unavailable") {
          // Nothing ran: the job keeps its place and the loop waits before trying the engine again.
          await this.idle(engineDelay);
          engineDelay = Math.min(engineDelay * 2, this.options.retryDelayMs.max);
        } else {
          engineDelay = this.options.retryDelayMs.first;
        }
      } catch (error) {
        // A database that stays busy or a full disk must not end the loop: log, wait, try again.
        this.log.error({ error: messageOf(error) }, "worker loop failed; retrying");
        await this.idle(this.options.retryDelayMs.max);
      }
    }
  }

  private stagedPaths(jobId: string) {
    const png = path.join(this.options.stagingDir, `${jobId}.png`);
    return { png, result: `${png}.result.json` };
  }

  private async runJob(job: Job): Promise<"finished" | "engine_unavailable"> {
    const log = this.log.child({ jobId: job.id });
    if (job.cancelRequested) {
      this.end(job, "cancelled");
      return "finished";
    }
    log.info({ attempt: job.attempts, model: job.request.model.name }, "job running");
    this.current = { job, takenOver: false };
    // cancel_job may come from any process: it marks the row, and this watch passes the mark to the engine.
    const cancelWatch = setInterval(() => {
      try {
        if (this.jobs.isCancelRequested(job.id)) {
          this.engine.cancel(job.id);
          clearInterval(cancelWatch);
        }
      } catch (error) {
        log.warn({ error: messageOf(error) }, "could not read the cancel mark");
      }
    }, this.options.cancelPollMs);
    const staged = this.stagedPaths(job.id);
    try {
      const key = this.jobs.fixImageKey(job.id, newImageKey(this.options.keyPrefix, job.id));
      let sidecar: ImageSidecar;
      if (await this.storedByEarlierRun(key, log)) {
        // An earlier run stored it and died before indexing: index it, generate nothing.
        log.info({ key }, "image already stored by an earlier run; indexing it");
        sidecar = this.sidecar(job, key, (await this.stagedResult(staged)) ?? this.resultFromRequest(job));
      } else {
        const result = (await this.stagedResult(staged)) ?? (await this.generate(job, staged));
        sidecar = this.sidecar(job, key, result);
        await this.storeWithRetry(job, key, staged.png, sidecar, log);
      }
      // The image is stored: a busy or full database must not turn that into a failed job. Safe to repeat.
      await this.withRetry(log, "could not record the finished job", () => this.complete(job, key, sidecar), (error) =>
        error instanceof JobTakenOver ? error : undefined,
      );
      await this.removeStaged(staged);
      this.setNotice(null);
      log.info({ key }, "job done");
      return "finished";
    } catch (error) {
      return await this.handleFailure(job, error, staged, log);
    } finally {
      clearInterval(cancelWatch);
      this.current = null;
    }
  }

  private async handleFailure(job: Job, error: unknown, staged: { png: string; result: string }, log: Logger): Promise<"finished" | "engine_unavailable"> {
    if (this.current?.takenOver || error instanceof JobTakenOver) {
      this.jobs.requeue(job.id, { countAttempt: false, attempt: job.attempts });
      log.warn("lease lost mid-job; the job is left to the process that holds the queue now");
      return "finished";
    }
    if (this.stopping) {
      // A shutdown cut the job off (the runner abandons it when told to stop): not the job's fault, so it keeps
      // its retry and runs again at the next start.
      this.jobs.requeue(job.id, { countAttempt: false, attempt: job.attempts });
      log.info("server stopping; job put back in the queue");
      return "finished";
    }
    const cancelRequested = this.jobs.isCancelRequested(job.id);
    if (cancelRequested || (error instanceof EngineJobError && error.code === "cancelled")) {
      await this.removeStaged(staged);
      this.end(job, "cancelled");
      log.info("job cancelled");
      return "finished";
    }
    if (error instanceof EngineJobError && error.code === "engine_unavailable") {
      this.jobs.requeue(job.id, { countAttempt: false, attempt: job.attempts });
      this.setNotice(`the image engine is not available: ${error.message}`);
      log.warn({ reason: error.message }, "engine unavailable; job stays queued");
      return "engine_unavailable";
    }
    if (error instanceof EngineJobError && error.retryable && job.attempts < MAX_ATTEMPTS) {
      this.jobs.requeue(job.id, { attempt: job.attempts });
      log.warn({ error: error.message }, "engine failed mid-job; job requeued for its one retry");
      return "finished";
    }
    if (error instanceof StorageRefused) {
      // The image exists; say where, so nothing finished is lost even though storage would not take it.
      const kept = existsSync(staged.png) ? `; the image is kept at ${staged.png}` : "";
      this.end(job, "failed", { code: "storage_refused", message: `${error.message}${kept}` });
    } else {
      await this.removeStaged(staged);
      const code = error instanceof EngineJobError ? error.code : "internal_error";
      this.end(job, "failed", { code, message: messageOf(error) });
    }
    log.error({ error: messageOf(error) }, "job failed");
    return "finished";
  }

  private end(job: Job, to: "failed" | "cancelled", error?: { code: string; message: string }): void {
    const from = job.state === "queued" ? "queued" : "running";
    if (this.jobs.finish(job.id, from, to, { ...(error && { error }), ...(from === "running" && { attempt: job.attempts }) })) {
      this.events.emit("ended", job.id);
    }
  }

  private async generate(job: Job, staged: { png: string; result: string }): Promise<GenerationResult> {
    await mkdir(this.options.stagingDir, { recursive: true });
    const result = await this.engine.generate(job.request, {
      jobId: job.id,
      outputPath: staged.png,
      onProgress: (progress) => this.jobs.setProgress(job.id, job.attempts, progress.step, progress.totalSteps),
    });
    // The result file goes down after the PNG, whole (write then rename): both present means a restart can skip
    // straight to the upload.
    await writeFile(`${staged.result}.partial`, JSON.stringify(result));
    await rename(`${staged.result}.partial`, staged.result);
    return result;
  }

  private async stagedResult(staged: { png: string; result: string }): Promise<GenerationResult | undefined> {
    if (!existsSync(staged.png) || !existsSync(staged.result)) return undefined;
    try {
      return JSON.parse(await readFile(staged.result, "utf8")) as GenerationResult;
    } catch {
      return undefined; // unreadable: generate again rather than fail
    }
  }

  private async removeStaged(staged: { png: string; result: string }): Promise<void> {
    await Promise.all([staged.png, staged.result, `${staged.png}.partial`].map((file) => rm(file, { force: true })));
  }

  private sidecar(job: Job, key: string, result: GenerationResult): ImageSidecar {
    return {
      key,
      jobId: job.id,
      createdAt: new Date().toISOString(),
      engine: this.options.engineName,
      model: job.request.model.name,
      family: result.family,
      request: { ...job.request, model: job.request.model.name },
      seed: result.seed,
      width: result.width,
      height: result.height,
      scheduler: result.scheduler,
      device: result.device,
      versions: result.versions,
      timings: result.timings,
      modelLoads: result.modelLoads,
      stepsRun: result.stepsRun,
    };
  }

  private resultFromRequest(job: Job): GenerationResult {
    const { width, height, seed } = job.request;
    return { width, height, seed, family: "unknown", scheduler: job.request.scheduler ?? "default", device: "unknown", modelLoads: 0, stepsRun: 0, timings: { loadSeconds: 0, inferenceSeconds: 0, saveSeconds: 0 }, versions: {} };
  }

  /**
   * Whether an earlier run already stored this key. Unknown while storage is down: then generate anyway (the key
   * is fixed, so the upload overwrites rather than duplicates) and let the upload wait for storage to return.
   */
  private async storedByEarlierRun(key: string, log: Logger): Promise<boolean> {
    try {
      return await this.store.has(key);
    } catch (error) {
      // Down, or a 403 for a missing key when the credentials may not list the bucket: either way unknown.
      log.warn({ key, error: messageOf(error) }, "cannot ask storage whether an earlier run stored this image; generating it");
      return false;
    }
  }

  /**
   * Storage down must not lose a finished image: transient failures are retried with backoff while the PNG waits
   * in staging. A refusal that waiting cannot fix, or a cancel, ends the wait.
   */
  private async storeWithRetry(job: Job, key: string, pngPath: string, sidecar: ImageSidecar, log: Logger): Promise<void> {
    let waited = false;
    await this.withRetry(
      log,
      "storage failed",
      () => this.store.put(key, pngPath, sidecar),
      (error) => {
        if (isPermanentStorageError(error)) return new StorageRefused(`storage refused the image: ${messageOf(error)}`);
        if (this.jobs.isCancelRequested(job.id)) return new EngineJobError("cancelled", "cancelled while waiting for storage");
        waited = true;
        this.setNotice(`storage is unavailable (${messageOf(error)}); retrying`);
        return undefined;
      },
    );
    if (waited) this.setNotice(null);
  }

  /**
   * Runs `operation` until it succeeds, backing off between tries. `giveUp` turns an error into the one to throw
   * instead of retrying; a shutdown or a lost lease always ends the loop.
   */
  private async withRetry<T>(log: Logger, what: string, operation: () => Promise<T> | T, giveUp: (error: unknown) => unknown): Promise<T> {
    let delay = this.options.retryDelayMs.first;
    for (;;) {
      try {
        return await operation();
      } catch (error) {
        const final = giveUp(error);
        if (final !== undefined) throw final;
        if (this.stopping) throw error;
        if (this.current?.takenOver) throw new JobTakenOver();
        log.warn({ error: messageOf(error), retryInMs: delay }, `${what}; will retry`);
        await this.idle(delay);
        delay = Math.min(delay * 2, this.options.retryDelayMs.max);
      }
    }
  }

  /** The index row and the job's `done` land in one transaction: a listed image always has a done job. */
  private complete(job: Job, key: string, sidecar: ImageSidecar): void {
    this.db.transaction(() => {
      this.index.add({
        key,
        jobId: job.id,
        createdAt: sidecar.createdAt,
        prompt: job.request.prompt,
        model: job.request.model.name,
        width: sidecar.width,
        height: sidecar.height,
        seed: sidecar.seed,
        metadata: { ...sidecar },
      });
      // Fenced by attempt: if another process took the job over meanwhile, the index row rolls back too.
      if (!this.jobs.finish(job.id, "running", "done", { attempt: job.attempts })) throw new JobTakenOver();
    })();
    this.events.emit("ended", job.id);
  }
}
