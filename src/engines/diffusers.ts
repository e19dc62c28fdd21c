import { existsSync } from "node:fs";
import type { Logger } from "../core/log.js";
import { imageCount, type GenerationRequest, type GenerationResult } from "../core/generation.js";
import type { Engine, EngineHealth, GenerationJob } from "./engine.js";
import { EngineJobError } from "./engine.js";
import type { JobDeadline, RunnerOptions, RunnerProcess } from "./diffusersRunner.js";
import type { ReadyEvent } from "./runnerProtocol.js";

/** What the engine adds to the runner's own options: when a job counts as hung, when a runner counts as broken. */
export interface DiffusersEngineOptions extends RunnerOptions {
  /**
   * A job's deadline: `baseMs` (model loads, LoRAs, the VAE) plus, per step of a one-megapixel image,
   * `msPerMegapixelStep`, or when that is null the device's own allowance (PER_STEP_MS_BY_DEVICE).
   */
  jobDeadline: { baseMs: number; msPerMegapixelStep: number | null };
  /** Starts that may fail in a row (the worker backs off between them) before jobs fail instead of waiting. */
  startAttempts: number;
  /** How long a broken runner rests before the next try; jobs in between fail at once with the fix. */
  brokenRetryMs: number;
}

/** Generous per-step allowances, a few times the slowest machines we know (an SDXL step on CPU takes a minute or more). */
const PER_STEP_MS_BY_DEVICE = { cpu: 300_000, accelerated: 30_000 };

/** A runner that failed to start `startAttempts` times in a row, and when it may be tried again. */
interface BrokenRunner {
  error: EngineJobError;
  retryAt: number;
}

/**
 * The built-in engine: a long-lived Python process that keeps pipelines warm between jobs.
 * If the runner dies it is started again for the next job; the job it was running is the worker's to retry.
 */
export class DiffusersEngine implements Engine {
  readonly name = "diffusers";
  private runner: RunnerProcess | null = null;
  private starting: Promise<RunnerProcess> | null = null;
  /** The runner still importing torch: stop() must be able to kill it too. */
  private spawning: RunnerProcess | null = null;
  private readyInfo: ReadyEvent | null = null;
  private stopped = false;
  private restarts = 0;
  private startFailures = 0;
  private broken: BrokenRunner | null = null;

  constructor(
    private readonly options: DiffusersEngineOptions,
    private readonly log: Logger,
  ) {}

  /** Device and library versions, once the runner has said hello. */
  get info(): ReadyEvent | null {
    return this.readyInfo;
  }

  health(): EngineHealth {
    const state = this.stopped ? "stopped" : this.runner?.isAlive ? "ready" : this.starting ? "starting" : this.broken ? "broken" : "idle";
    return { state, restarts: this.restarts, ...(this.readyInfo && { device: this.readyInfo.device }) };
  }

  async start(): Promise<void> {
    await this.ensureRunner();
  }

  private ensureRunner(): Promise<RunnerProcess> {
    if (this.stopped) return Promise.reject(new EngineJobError("engine_unavailable", "the server is shutting down", true));
    if (this.runner?.isAlive) return Promise.resolve(this.runner);
    if (this.broken && Date.now() < this.broken.retryAt) return Promise.reject(this.broken.error);
    this.starting ??= this.spawn().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  /**
   * A start that failed: the first few are the worker's to wait out (jobs stay queued, with the reason as notice);
   * after `startAttempts` in a row the runner counts as broken (a broken venv crash-loops forever otherwise), and
   * jobs fail with the fix until a later try succeeds.
   */
  private startFailed(error: EngineJobError): EngineJobError {
    this.startFailures++;
    if (this.startFailures < this.options.startAttempts && !this.broken) return error;
    const retrySeconds = Math.round(this.options.brokenRetryMs / 1000);
    const broken = new EngineJobError(
      "runner_broken",
      `the diffusers runner failed to start ${this.startFailures} times in a row, so jobs fail until it is fixed; the server stays up and tries it again every ${retrySeconds}s. Last failure: ${error.message}`,
    );
    if (!this.broken) this.log.error({ attempts: this.startFailures, error: error.message }, "diffusers runner is broken; jobs fail until it starts");
    this.broken = { error: broken, retryAt: Date.now() + this.options.brokenRetryMs };
    return broken;
  }

  private async spawn(): Promise<RunnerProcess> {
    if (!existsSync(this.options.python)) {
      throw this.startFailed(
        new EngineJobError(
          "engine_unavailable",
          `the runner's Python (${this.options.python}) is missing.\nFix: run 'npm run setup' to build the venv, or point KITTY_IMAGES_PYTHON at a Python with python/requirements.txt installed`,
          true,
        ),
      );
    }
    // execa and the runner's supervisor load with the first runner, not with the server.
    const { RunnerProcess } = await import("./diffusersRunner.js");
    const runner = new RunnerProcess(this.options, this.log);
    this.spawning = runner;
    this.log.info({ runnerPid: runner.pid }, "starting diffusers runner");
    void runner.exited.then(() => {
      // release() and stop() let go of the runner before it exits: one still held here died on its own.
      if (this.stopped || (this.runner !== runner && this.spawning !== runner)) return;
      this.restarts++;
      this.log.warn({ runnerPid: runner.pid }, "diffusers runner exited; it will be restarted for the next job");
    });
    try {
      this.readyInfo = await runner.ready;
    } catch (error) {
      // Let go of on purpose (release, shutdown): not the runner's failure.
      const letGo = this.stopped || this.spawning !== runner;
      throw letGo || !(error instanceof EngineJobError) ? error : this.startFailed(error);
    } finally {
      this.spawning = null;
    }
    if (this.broken) this.log.info("diffusers runner starts again; jobs run again");
    this.startFailures = 0;
    this.broken = null;
    this.log.info({ runnerPid: runner.pid, device: this.readyInfo.device, dtype: this.readyInfo.dtype, versions: this.readyInfo.versions }, "diffusers runner ready");
    this.runner = runner;
    return runner;
  }

  async generate(request: GenerationRequest, job: GenerationJob): Promise<GenerationResult> {
    if (job.signal.aborted) throw new EngineJobError("cancelled", "cancelled before it started");
    const runner = await this.ensureRunner();
    // Cancelled while the runner was still importing torch: it never sees the job.
    if (job.signal.aborted) throw new EngineJobError("cancelled", "cancelled before it started");
    const cancel = () => runner.cancel(job.jobId);
    job.signal.addEventListener("abort", cancel, { once: true });
    try {
      // The request's fields are the wire format's, but for where the files are: the job's, on this machine.
      const { count: _count, initImage, ...fields } = request;
      const deadline = this.deadlineFor(request);
      const done = await runner.generate(
        {
          type: "generate",
          jobId: job.jobId,
          ...fields,
          outputPath: job.outputPaths[0]!,
          outputPaths: job.outputPaths,
          previewPaths: job.previewPaths,
          initImage: initImage && job.initImagePath ? { path: job.initImagePath, strength: initImage.strength } : null,
        },
        job,
        deadline,
      );
      const { type: _type, jobId: _jobId, outputPath: _outputPath, ...result } = done;
      return { ...result, versions: { ...this.readyInfo?.versions, runner: "diffusers_runner" } };
    } finally {
      job.signal.removeEventListener("abort", cancel);
    }
  }

  /** The job's deadline, from its size and steps and the device's speed class; the `why` names the knobs. */
  private deadlineFor(request: GenerationRequest): JobDeadline {
    const { baseMs, msPerMegapixelStep } = this.options.jobDeadline;
    const device = this.readyInfo?.device ?? "cpu";
    const perStep = msPerMegapixelStep ?? (device.startsWith("cpu") ? PER_STEP_MS_BY_DEVICE.cpu : PER_STEP_MS_BY_DEVICE.accelerated);
    const steps = (request.steps + (request.refiner?.steps ?? 0)) * imageCount(request);
    const megapixels = (request.width * request.height) / 1e6;
    const ms = Math.round(baseMs + steps * megapixels * perStep);
    return {
      ms,
      why: `${baseMs / 1000}s KITTY_IMAGES_JOB_TIMEOUT_SECONDS + ${steps} steps x ${megapixels.toFixed(2)} MP x ${perStep / 1000}s KITTY_IMAGES_STEP_TIMEOUT_SECONDS on ${device}; raise them if jobs this size really take longer here`,
    };
  }

  async release(): Promise<void> {
    // Let go first, so that its exit does not count as a crash.
    const spawning = this.spawning;
    this.spawning = null;
    spawning?.kill();
    await this.starting?.catch(() => undefined);
    const runner = this.runner;
    this.runner = null;
    await runner?.stop();
  }

  /** Like release(), and for good: no runner is started again. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.release();
  }
}
