import { EventEmitter } from "node:events";
import { existsSync } from "node:fs";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import type { Db } from "../db.js";
import type { Engine, GenerationResult } from "../engines/engine.js";
import { EngineJobError } from "../engines/engine.js";
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
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The one loop that runs jobs: strictly one at a time, oldest first, in the one process holding the lease.
 * A finished image is kept in the staging folder until storage has it and the index says so; a restart
 * that finds it there uploads it instead of generating again.
 */
export class Worker {
  /** Emits "ended" with the jobId when a job reaches a terminal state. */
  readonly events = new EventEmitter();
  private wakeUp: (() => void) | null = null;
  private stopping = false;
  private loop: Promise<void> | null = null;
  private engineProblem: string | null = null;
  private holdsLease = false;
  private heartbeatTimer: NodeJS.Timeout | null = null;

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

  /** Set while the engine cannot start, so a queued job can say why it is waiting. */
  get waitingReason(): string | null {
    return this.engineProblem;
  }

  get isRunningJobs(): boolean {
    return this.holdsLease;
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

  /** Becomes the one process that runs jobs from this queue, or returns false when another holds the lease. */
  private takeLease(): boolean {
    if (!this.lease.tryAcquire()) return false;
    this.holdsLease = true;
    this.heartbeatTimer = setInterval(() => {
      if (!this.lease.heartbeat()) this.log.error("lost the worker lease to another process; this process stalled");
    }, this.options.leaseHeartbeatMs);
    this.heartbeatTimer.unref();
    const recovered = this.jobs.recoverInterrupted();
    if (recovered.resumed.length || recovered.failed.length) this.log.warn(recovered, "jobs interrupted when the last worker stopped");
    this.log.info("this process runs the queue");
    // Start the runner now so the first job does not pay for importing torch; failures are retried per job.
    this.engine.start().catch((error: Error) => this.log.warn({ error: error.message }, "engine did not start yet; jobs will wait and retry"));
    return true;
  }

  private async run(): Promise<void> {
    let engineDelay = this.options.retryDelayMs.first;
    let announcedFollower = false;
    while (!this.stopping) {
      if (!this.holdsLease && !this.takeLease()) {
        if (!announcedFollower) this.log.info({ holderPid: this.lease.holder()?.pid }, "another process runs the queue; this one queues and answers");
        announcedFollower = true;
        await this.idle(this.options.leaseHeartbeatMs);
        continue;
      }
      const job = this.jobs.takeNext();
      if (!job) {
        // Other processes enqueue too and cannot wake this one: look again now and then.
        await this.idle(this.options.queuePollMs);
        continue;
      }
      const outcome = await this.runJob(job);
      if (outcome === "engine_unavailable") {
        // Nothing ran: the job keeps its place and the loop waits before trying the engine again.
        await this.idle(engineDelay);
        engineDelay = Math.min(engineDelay * 2, this.options.retryDelayMs.max);
      } else {
        engineDelay = this.options.retryDelayMs.first;
      }
    }
  }

  private stagedPaths(jobId: string) {
    const png = path.join(this.options.stagingDir, `${jobId}.png`);
    return { png, result: `${png}.result.json` };
  }

  private async runJob(job: Job): Promise<"finished" | "engine_unavailable"> {
    const log = this.log.child({ jobId: job.id });
    log.info({ attempt: job.attempts, model: job.request.model.name }, "job running");
    // cancel_job may come from any process: it marks the row, and this watch passes it on to the engine.
    const cancelWatch = setInterval(() => {
      if (this.jobs.isCancelRequested(job.id)) {
        this.engine.cancel(job.id);
        clearInterval(cancelWatch);
      }
    }, this.options.cancelPollMs);
    try {
      const key = this.jobs.fixImageKey(job.id, newImageKey(this.options.keyPrefix, job.id));
      const staged = this.stagedPaths(job.id);
      let sidecar: ImageSidecar;
      if (await this.store.has(key)) {
        // An earlier run stored it and died before indexing: index it from the request, generate nothing.
        log.info({ key }, "image already stored by an earlier run; indexing it");
        sidecar = this.sidecar(job, key, (await this.stagedResult(staged)) ?? this.resultFromRequest(job));
      } else {
        const result = (await this.stagedResult(staged)) ?? (await this.generate(job, staged));
        sidecar = this.sidecar(job, key, result);
        await this.storeWithRetry(key, staged.png, sidecar, log);
      }
      this.complete(job, key, sidecar);
      await rm(staged.png, { force: true });
      await rm(staged.result, { force: true });
      log.info({ key }, "job done");
      this.engineProblem = null;
    } catch (error) {
      if (error instanceof EngineJobError && error.code === "engine_unavailable") {
        this.engineProblem = error.message;
        this.jobs.requeue(job.id, { countAttempt: false });
        log.warn({ reason: error.message }, "engine unavailable; job stays queued");
        return "engine_unavailable";
      }
      this.fail(job, error, log);
    } finally {
      clearInterval(cancelWatch);
    }
    return "finished";
  }

  private async generate(job: Job, staged: { png: string; result: string }): Promise<GenerationResult> {
    await mkdir(this.options.stagingDir, { recursive: true });
    const result = await this.engine.generate(job.request, {
      jobId: job.id,
      outputPath: staged.png,
      onProgress: (progress) => this.jobs.setProgress(job.id, progress.step, progress.totalSteps),
    });
    // The result file is written after the PNG: both present means a restart can skip straight to upload.
    await writeFile(staged.result, JSON.stringify(result));
    return result;
  }

  private async stagedResult(staged: { png: string; result: string }): Promise<GenerationResult | undefined> {
    if (!existsSync(staged.png) || !existsSync(staged.result)) return undefined;
    return JSON.parse(await readFile(staged.result, "utf8")) as GenerationResult;
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
    };
  }

  private resultFromRequest(job: Job): GenerationResult {
    const { width, height, seed } = job.request;
    return { width, height, seed, family: "unknown", scheduler: job.request.scheduler ?? "default", device: "unknown", modelLoads: 0, timings: { loadSeconds: 0, inferenceSeconds: 0, saveSeconds: 0 }, versions: {} };
  }

  /** Storage down must not lose a finished image: keep trying, with backoff, while the PNG waits in staging. */
  private async storeWithRetry(key: string, pngPath: string, sidecar: ImageSidecar, log: Logger): Promise<void> {
    let delay = this.options.retryDelayMs.first;
    for (;;) {
      try {
        await this.store.put(key, pngPath, sidecar);
        return;
      } catch (error) {
        if (this.stopping) throw new EngineJobError("engine_unavailable", "server stopping before the image was stored", true);
        log.warn({ key, error: messageOf(error), retryInMs: delay }, "storing the image failed; will retry");
        await sleep(delay);
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
      this.jobs.finish(job.id, "running", "done");
    })();
    this.events.emit("ended", job.id);
  }

  private fail(job: Job, error: unknown, log: Logger): void {
    if (this.stopping) {
      // A shutdown cut the job off (the runner abandons it when told to stop): not the job's fault, so it keeps
      // its retry and runs again at the next start.
      this.jobs.requeue(job.id, { countAttempt: false });
      log.info("server stopping; job put back in the queue");
      return;
    }
    const cancelRequested = this.jobs.isCancelRequested(job.id);
    if (error instanceof EngineJobError && error.code === "cancelled") {
      this.jobs.finish(job.id, "running", "cancelled");
      log.info("job cancelled while running");
    } else if (error instanceof EngineJobError && error.retryable && !cancelRequested && job.attempts < MAX_ATTEMPTS) {
      this.jobs.requeue(job.id);
      log.warn({ error: error.message }, "engine failed mid-job; job requeued for its one retry");
      return;
    } else if (cancelRequested) {
      this.jobs.finish(job.id, "running", "cancelled");
    } else {
      const code = error instanceof EngineJobError ? error.code : "internal_error";
      this.jobs.finish(job.id, "running", "failed", { code, message: messageOf(error) });
      log.error({ code, error: messageOf(error) }, "job failed");
    }
    this.events.emit("ended", job.id);
  }
}
