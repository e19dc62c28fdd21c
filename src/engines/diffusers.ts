// The built-in engine and its runner's life in one file: the state (RunnerState), its moves (MOVES) and the methods
// that make them are read together, or the moves cannot be checked.
import { existsSync } from "node:fs";
import type { Logger } from "../core/log.js";
import { imageCount, type GenerationRequest, type GenerationResult } from "../core/generation.js";
import type { Engine, EngineHealth, GenerationJob } from "./engine.js";
import { EngineJobError } from "./engine.js";
import type { JobDeadline, RunnerOptions, RunnerProcess } from "./diffusersRunner.js";
import type { ReadyEvent } from "./runnerProtocol.js";
import { seconds } from "./seconds.js";

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

/**
 * Where the engine's runner is in its life, as one value rather than a field per fact, so that no two facts can
 * disagree (a runner held and also starting, a broken engine with a live runner). Only moveTo() changes it, along
 * the moves in MOVES.
 */
type RunnerState = Idle | Starting | Ready | Broken | { kind: "stopped" };

/** No runner: none started yet, released to another process, or the last start failed (`failedStarts` in a row). */
interface Idle {
  kind: "idle";
  failedStarts: number;
}

/** A runner on its way up: spawned and importing torch, or (`runner` still null) its supervisor still loading. */
interface Starting {
  kind: "starting";
  start: Promise<RunnerProcess>;
  runner: RunnerProcess | null;
  /** Where a start that fails through no fault of the runner's (let go of, or a bug) leaves the engine: where it was. */
  before: Idle | Broken;
}

/** A runner that said ready. It may have died or hung since (`runner.isAlive`): the next job starts another. */
interface Ready {
  kind: "ready";
  runner: RunnerProcess;
}

/** `startAttempts` starts failed in a row: jobs fail with `error` until `retryAt`, then one more start is tried. */
interface Broken {
  kind: "broken";
  failedStarts: number;
  error: EngineJobError;
  retryAt: number;
}

type StateKind = RunnerState["kind"];

/**
 * The moves there are. Every start goes through "starting" (a dead ready runner, an idle engine, a broken one past
 * its rest), and ends ready, idle (failed, or let go of) or broken; "stopped" is reachable from anywhere, and final.
 */
const MOVES: Record<StateKind, readonly StateKind[]> = {
  idle: ["starting", "stopped"],
  starting: ["ready", "idle", "broken", "stopped"],
  ready: ["starting", "idle", "stopped"],
  broken: ["starting", "stopped"],
  stopped: [],
};

/**
 * The built-in engine: a long-lived Python process that keeps pipelines warm between jobs.
 * If the runner dies it is started again for the next job; the job it was running is the worker's to retry.
 */
export class DiffusersEngine implements Engine {
  readonly name = "diffusers";
  private state: RunnerState = { kind: "idle", failedStarts: 0 };
  /** Runners let go of on purpose (release, stop): their exit is no crash. */
  private readonly letGo = new WeakSet<RunnerProcess>();
  private readyInfo: ReadyEvent | null = null;
  private restarts = 0;

  constructor(
    private readonly options: DiffusersEngineOptions,
    private readonly log: Logger,
  ) {}

  /** Device and library versions, once the runner has said hello. */
  get info(): ReadyEvent | null {
    return this.readyInfo;
  }

  health(): EngineHealth {
    // A ready runner that died or hung since reads as idle: the next job starts another.
    const state = this.state.kind === "ready" && !this.state.runner.isAlive ? "idle" : this.state.kind;
    return { state, restarts: this.restarts, ...(this.readyInfo && { device: this.readyInfo.device }) };
  }

  async start(): Promise<void> {
    await this.ensureRunner();
  }

  private moveTo(next: RunnerState): void {
    // A bug here, never a job's fault: say which move was refused.
    if (!MOVES[this.state.kind].includes(next.kind)) throw new Error(`diffusers engine: no move from ${this.state.kind} to ${next.kind} (see MOVES)`);
    this.state = next;
  }

  /** A start's outcome, unless the engine has moved on since it began (stopped). */
  private endStart(attempt: Starting, next: RunnerState): void {
    if (this.state === attempt) this.moveTo(next);
  }

  private ensureRunner(): Promise<RunnerProcess> {
    const state = this.state;
    switch (state.kind) {
      case "stopped":
        return Promise.reject(new EngineJobError("engine_unavailable", "the server is shutting down", true));
      case "ready":
        return state.runner.isAlive ? Promise.resolve(state.runner) : this.startRunner({ kind: "idle", failedStarts: 0 });
      case "broken":
        return Date.now() < state.retryAt ? Promise.reject(state.error) : this.startRunner(state);
      case "starting":
        return state.start;
      case "idle":
        return this.startRunner(state);
    }
  }

  private startRunner(before: Idle | Broken): Promise<RunnerProcess> {
    // `start` is spawn()'s promise, set before anyone can read it: the state must be in place before spawn() runs,
    // since a start that fails at once (no Python) moves on from it before returning.
    const attempt: Starting = { kind: "starting", start: Promise.resolve(null as never), runner: null, before };
    this.moveTo(attempt);
    attempt.start = this.spawn(attempt);
    return attempt.start;
  }

  /**
   * A start that failed: the first few are the worker's to wait out (jobs stay queued, with the reason as notice);
   * after `startAttempts` in a row the runner counts as broken (a broken venv crash-loops forever otherwise), and
   * jobs fail with the fix until a later try succeeds.
   */
  private startFailed(attempt: Starting, error: EngineJobError): EngineJobError {
    const failedStarts = attempt.before.failedStarts + 1;
    const wasBroken = attempt.before.kind === "broken";
    if (failedStarts < this.options.startAttempts && !wasBroken) {
      this.endStart(attempt, { kind: "idle", failedStarts });
      return error;
    }
    const broken = new EngineJobError(
      "runner_broken",
      `the diffusers runner failed to start ${failedStarts} times in a row, so jobs fail until it is fixed; the server stays up and tries it again every ${seconds(this.options.brokenRetryMs)}s. Last failure: ${error.message}`,
    );
    if (!wasBroken) this.log.error({ attempts: failedStarts, error: error.message }, "diffusers runner is broken; jobs fail until it starts");
    this.endStart(attempt, { kind: "broken", failedStarts, error: broken, retryAt: Date.now() + this.options.brokenRetryMs });
    return broken;
  }

  private async spawn(attempt: Starting): Promise<RunnerProcess> {
    if (!existsSync(this.options.python)) {
      throw this.startFailed(
        attempt,
        new EngineJobError(
          "engine_unavailable",
          `the runner's Python (${this.options.python}) is missing.\nFix: run 'npm run setup' to build the venv, or point KITTY_IMAGES_PYTHON at a Python with python/requirements.txt installed`,
          true,
        ),
      );
    }
    let runner: RunnerProcess;
    let ready: ReadyEvent;
    try {
      // execa and the runner's supervisor load with the first runner, not with the server.
      const { RunnerProcess } = await import("./diffusersRunner.js");
      runner = new RunnerProcess(this.options, this.log);
      attempt.runner = runner;
      this.log.info({ runnerPid: runner.pid }, "starting diffusers runner");
      ready = await runner.ready;
    } catch (error) {
      // Let go of on purpose (release, shutdown), or no EngineJobError: not the runner's failure.
      const letGo = this.state.kind === "stopped" || (attempt.runner !== null && this.letGo.has(attempt.runner));
      if (letGo || !(error instanceof EngineJobError)) {
        this.endStart(attempt, attempt.before);
        throw error;
      }
      throw this.startFailed(attempt, error);
    }
    void runner.exited.then(() => {
      // A runner let go of exits on purpose; one that dies before it is ready is a failed start, not a restart.
      if (this.state.kind === "stopped" || this.letGo.has(runner)) return;
      this.restarts++;
      this.log.warn({ runnerPid: runner.pid }, "diffusers runner exited; it will be restarted for the next job");
    });
    this.readyInfo = ready;
    if (attempt.before.kind === "broken") this.log.info("diffusers runner starts again; jobs run again");
    this.log.info({ runnerPid: runner.pid, device: ready.device, dtype: ready.dtype, versions: ready.versions }, "diffusers runner ready");
    this.endStart(attempt, { kind: "ready", runner });
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
      const { count: _count, initImage, mask, control, edit, upscale, ...fields } = request;
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
          ...(mask && job.maskPath && { mask: { path: job.maskPath, blur: mask.blur } }),
          ...(edit && job.editPaths?.length && { edit: { images: job.editPaths } }),
          ...(upscale?.mode === "esrgan" && { upscale: { mode: "esrgan" as const, scale: upscale.scale } }),
          ...(control?.length && {
            control: control.map(({ path, type, strength, start, end, preprocess }, index) => ({ path, imagePath: job.controlPaths![index]!, type, strength, start, end, preprocess })),
          }),
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
    await this.letGoOf(this.state);
  }

  /** Like release(), and for good: no runner is started again. */
  async stop(): Promise<void> {
    const held = this.state;
    if (held.kind === "stopped") return;
    this.moveTo({ kind: "stopped" });
    await this.letGoOf(held);
  }

  /** Stops the runner `held` has, or is starting: marked let go of first, so that its exit does not count as a crash. */
  private async letGoOf(held: RunnerState): Promise<void> {
    let runner = held.kind === "ready" ? held.runner : null;
    if (held.kind === "starting") {
      if (held.runner) {
        this.letGo.add(held.runner);
        held.runner.kill();
      }
      // One whose supervisor was still loading had no process to kill: it comes up, and is stopped below.
      runner = await held.start.catch(() => null);
    }
    if (!runner) return;
    this.letGo.add(runner);
    if (this.state.kind === "ready" && this.state.runner === runner) this.moveTo({ kind: "idle", failedStarts: 0 });
    await runner.stop();
  }
}
