import type { JobErrorCode } from "../core/errors.js";
import type { GenerationProgress, GenerationRequest, GenerationResult } from "../core/generation.js";

// The contract between the worker and the engines (the diffusers runner, AUTOMATIC1111, ComfyUI, InvokeAI): the
// Engine interface, the job it is handed, the error it fails with, and what it reports for /healthz.

/** One job as the worker hands it to an engine: where its files go, where its steps are reported, when to stop. */
export interface GenerationJob {
  jobId: string;
  /** Where the engine writes the PNGs, one per image of the batch; each must appear whole (write then rename). */
  outputPaths: string[];
  /** Where the engine may write a small WebP preview of each image (same order); an engine that cannot leaves them out. */
  previewPaths: string[];
  /** Image-to-image: the start image, already on local disk. */
  initImagePath: string | null;
  /** Inpaint: the mask, already on local disk (absent: none). */
  maskPath?: string | null;
  /** ControlNet: each control map, already on local disk, in the request's order. */
  controlPaths?: string[];
  /** An instruction edit: the image to edit, then its references, already on local disk. */
  editPaths?: string[];
  /** Never throws: the worker records progress in the background and logs a write the database refuses. */
  onProgress(progress: GenerationProgress): void;
  /** Aborted when the job is cancelled or this process must let go of it: the engine stops at its next step. */
  signal: AbortSignal;
}

/**
 * Why a generation did not produce an image. `retryable` means the job itself was fine and the engine broke
 * (a crashed runner); the worker gives such a job one more run. `engine_unavailable` means nothing ran at all.
 */
export class EngineJobError extends Error {
  constructor(
    readonly code: JobErrorCode,
    message: string,
    readonly retryable = false,
  ) {
    super(message);
    this.name = "EngineJobError";
  }
}

/** What /healthz and /metrics say about an engine. */
export interface EngineHealth {
  /** idle: nothing started yet (or released to another process); starting; ready; broken: failed to start again and again, jobs fail; stopped for good. */
  state: "idle" | "starting" | "ready" | "broken" | "stopped";
  /** Times the engine's process died on its own and had to be started again. */
  restarts: number;
  device?: string;
}

/** What every engine does for the worker. */
export interface Engine {
  readonly name: string;
  health(): EngineHealth;
  start(): Promise<void>;
  /** Rejects with an EngineJobError; with code "cancelled" once `job.signal` is aborted. */
  generate(request: GenerationRequest, job: GenerationJob): Promise<GenerationResult>;
  /** Frees the device (another process runs the queue now); the next generate() starts it again. */
  release(): Promise<void>;
  stop(): Promise<void>;
}
