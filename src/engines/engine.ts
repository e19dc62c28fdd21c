/** What every engine (the diffusers runner today; InvokeAI, AUTOMATIC1111, ComfyUI later) does for the worker. */

export interface GenerationRequest {
  prompt: string;
  negativePrompt: string | null;
  model: { name: string; path: string; refinerPath: string | null };
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  seed: number;
  scheduler: string | null;
  refiner: { steps: number; cfgScale: number; switchAt: number } | null;
}

export interface GenerationProgress {
  step: number;
  totalSteps: number;
}

export interface GenerationResult {
  width: number;
  height: number;
  seed: number;
  family: string;
  scheduler: string;
  device: string;
  modelLoads: number;
  /** Denoising steps that ran, base and refiner together. */
  stepsRun: number;
  timings: { loadSeconds: number; inferenceSeconds: number; saveSeconds: number };
  versions: Record<string, string>;
}

export interface GenerationJob {
  jobId: string;
  /** Where the engine writes the PNG; it must appear there whole (write then rename). */
  outputPath: string;
  onProgress(progress: GenerationProgress): void;
}

/**
 * Why a generation did not produce an image. `retryable` means the job itself was fine and the engine broke
 * (a crashed runner); the worker gives such a job one more run.
 */
export class EngineJobError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly retryable = false,
  ) {
    super(message);
    this.name = "EngineJobError";
  }
}

export interface Engine {
  readonly name: string;
  start(): Promise<void>;
  generate(request: GenerationRequest, job: GenerationJob): Promise<GenerationResult>;
  /** Asks the engine to stop the job; generate() then rejects with code "cancelled". */
  cancel(jobId: string): void;
  /** Frees the device (another process runs the queue now); the next generate() starts it again. */
  release(): Promise<void>;
  stop(): Promise<void>;
}
