import { existsSync } from "node:fs";
import type { Logger } from "../log.js";
import type { GenerationRequest, GenerationResult } from "../generation.js";
import type { Engine, EngineHealth, GenerationJob } from "./engine.js";
import { EngineJobError } from "./engine.js";
import type { RunnerOptions, RunnerProcess } from "./diffusersRunner.js";
import type { ReadyEvent } from "./runnerProtocol.js";

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

  constructor(
    private readonly options: RunnerOptions,
    private readonly log: Logger,
  ) {}

  /** Device and library versions, once the runner has said hello. */
  get info(): ReadyEvent | null {
    return this.readyInfo;
  }

  health(): EngineHealth {
    const state = this.stopped ? "stopped" : this.runner?.isAlive ? "ready" : this.starting ? "starting" : "idle";
    return { state, restarts: this.restarts, ...(this.readyInfo && { device: this.readyInfo.device }) };
  }

  async start(): Promise<void> {
    await this.ensureRunner();
  }

  private ensureRunner(): Promise<RunnerProcess> {
    if (this.stopped) return Promise.reject(new EngineJobError("engine_unavailable", "the server is shutting down", true));
    if (this.runner?.isAlive) return Promise.resolve(this.runner);
    this.starting ??= this.spawn().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  private async spawn(): Promise<RunnerProcess> {
    if (!existsSync(this.options.python)) {
      throw new EngineJobError(
        "engine_unavailable",
        `the runner's Python (${this.options.python}) is missing: run 'npm run setup' to build the venv, or set KITTY_IMAGES_PYTHON`,
        true,
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
    } finally {
      this.spawning = null;
    }
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
      );
      const { type: _type, jobId: _jobId, outputPath: _outputPath, ...result } = done;
      return { ...result, versions: { ...this.readyInfo?.versions, runner: "diffusers_runner" } };
    } finally {
      job.signal.removeEventListener("abort", cancel);
    }
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
