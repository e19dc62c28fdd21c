import type { GenerationRequest, SchedulerName, GenerationResult } from "../core/generation.js";
import { imageCount } from "../core/generation.js";
import type { Logger } from "../core/log.js";
import { EngineJobError, type Engine, type EngineHealth, type GenerationJob } from "./engine.js";
import { EngineHttp } from "./engineHttp.js";

/** How long an app engine waits: quick calls, and a job's deadline by its size (base + per step per megapixel). */
export interface AppTiming {
  callMs: number;
  jobBaseMs: number;
  msPerMegapixelStep: number;
}

/**
 * An engine that is another app (AUTOMATIC1111, ComfyUI, InvokeAI): nothing to start or stop, reached over HTTP,
 * text-to-image only, its models listed by that app. What each does differently is in its own file.
 */
export abstract class AppEngine<Timing extends AppTiming = AppTiming> implements Engine {
  abstract readonly name: string;
  /** Its waits, production's defaults unless the options set them (the fast tests shorten them). */
  readonly timing: Timing;
  protected readonly http: EngineHttp;
  protected stopped = false;

  constructor(
    app: { label: string; baseUrl: string; auth?: string | null; unreachableHint: string },
    timing: Timing,
    protected readonly log: Logger,
  ) {
    this.timing = timing;
    this.http = new EngineHttp(`${app.label} at ${app.baseUrl}`, app.baseUrl, app.auth ?? null, app.unreachableHint);
  }

  /** "ComfyUI at http://…": how every message names this engine. */
  protected get where(): string {
    return this.http.where;
  }

  health(): EngineHealth {
    return { state: this.stopped ? "stopped" : this.http.lastError ? "idle" : "ready", restarts: 0 };
  }

  /** Nothing to start: the app runs on its own, and a job finds out whether it answers. */
  async start(): Promise<void> {}

  async release(): Promise<void> {}

  async stop(): Promise<void> {
    this.stopped = true;
  }

  /** The models the app offers now, by the names its jobs take. */
  abstract models(): Promise<string[]>;

  abstract generate(request: GenerationRequest, job: GenerationJob): Promise<GenerationResult>;

  /** Refuses what no app engine runs here, before anything is sent. */
  protected checkRunnable(request: GenerationRequest, job: GenerationJob): void {
    if (this.stopped) throw new EngineJobError("engine_unavailable", "the server is shutting down", true);
    if (job.signal.aborted) throw new EngineJobError("cancelled", "cancelled before it started");
    if (request.initImage || request.mask || request.control?.length || request.edit || request.refiner || (request.loras?.length ?? 0) > 0) {
      throw new EngineJobError("bad_request", `${this.where} runs text-to-image only here: init_image, mask, control, edits, refiner and loras need the diffusers engine`);
    }
  }

  /** A scheduler the app has no sampler for is refused, never run as some other sampler. */
  protected checkScheduler(request: GenerationRequest, offered: Partial<Record<SchedulerName, unknown>>): void {
    if (request.scheduler && !(request.scheduler in offered)) {
      throw new EngineJobError("bad_request", `${this.where} has no sampler for scheduler ${request.scheduler}; it takes ${Object.keys(offered).join(", ")}`);
    }
  }

  /** The deadline for `images` images of this request. */
  protected deadlineMs(request: GenerationRequest, images = 1): number {
    return this.timing.jobBaseMs + ((request.width * request.height) / 1e6) * request.steps * images * this.timing.msPerMegapixelStep;
  }

  /** The result of a job the app ran: what it made and said; no model loads, dtype or token count of ours to report. */
  protected result(request: GenerationRequest, started: number, made: Pick<GenerationResult, "seed" | "family" | "scheduler" | "versions" | "engineInfo">): GenerationResult {
    return {
      width: request.width,
      height: request.height,
      device: this.where,
      dtype: "unknown",
      options: {},
      modelLoads: 0,
      stepsRun: request.steps * imageCount(request),
      promptTokens: 0,
      previews: [],
      timings: { loadSeconds: 0, inferenceSeconds: (Date.now() - started) / 1000, saveSeconds: 0 },
      ...made,
    };
  }
}
