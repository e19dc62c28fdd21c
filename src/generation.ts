/**
 * What a generation is, independent of who asks (tools, later REST and CLI) and who runs it (engines): the
 * request, its result and progress, the scheduler and family names, the value limits and the family defaults.
 * Everything above and below imports from here; this file imports nothing of the project's.
 */

/** Scheduler names the runner accepts; python/diffusers_runner/pipelines.py maps each to a diffusers class. */
export const SCHEDULERS = ["euler", "euler_a", "dpmpp_2m", "dpmpp_2m_karras", "ddim", "pndm", "heun", "unipc"] as const;
export type SchedulerName = (typeof SCHEDULERS)[number];

/** Families a model in models.yaml can be; a refiner is only ever another model's helper. */
export const MODEL_FAMILIES = ["sd15", "sdxl"] as const;
export type ModelFamily = (typeof MODEL_FAMILIES)[number];
export type PipelineFamily = ModelFamily | "sdxl_refiner";

/** diffusers' pipeline class (model_index.json `_class_name`) to family; the runner keeps the same map. */
export const PIPELINE_FAMILIES: Readonly<Record<string, PipelineFamily>> = {
  StableDiffusionPipeline: "sd15",
  StableDiffusionXLPipeline: "sdxl",
  StableDiffusionXLImg2ImgPipeline: "sdxl_refiner",
};

/** The bounds every request must fall within, whoever sends it; models.yaml defaults obey them too. */
export const LIMITS = {
  promptChars: 2000,
  size: { min: 256, max: 2048, multipleOf: 8 },
  steps: { min: 1, max: 150 },
  cfgScale: { min: 0, max: 30 },
  seed: { min: 0, max: 2 ** 32 - 1 },
} as const;

export interface GenerationDefaults {
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  /** null: the scheduler the model folder configures. */
  scheduler: SchedulerName | null;
  refiner: boolean;
}

export const FAMILY_DEFAULTS: Readonly<Record<ModelFamily, GenerationDefaults>> = {
  sdxl: { width: 1024, height: 1024, steps: 30, cfgScale: 7, scheduler: null, refiner: false },
  sd15: { width: 512, height: 512, steps: 30, cfgScale: 7, scheduler: "euler_a", refiner: false },
};

/** The SDXL refiner pass stays short and gentle: it polishes detail, it does not repaint. */
export const REFINER_LIMITS = { maxSteps: 10, maxCfgScale: 5, switchAt: 0.8 } as const;

export interface RefinerPass {
  steps: number;
  cfgScale: number;
  /** Fraction of the noise schedule the base model runs before the refiner takes over. */
  switchAt: number;
}

/** The refiner finishes the last fifth of the base schedule, never more than its caps. */
export function refinerPassFor(steps: number, cfgScale: number): RefinerPass {
  return {
    steps: Math.min(REFINER_LIMITS.maxSteps, Math.max(1, Math.round(steps * (1 - REFINER_LIMITS.switchAt)))),
    cfgScale: Math.min(REFINER_LIMITS.maxCfgScale, cfgScale),
    switchAt: REFINER_LIMITS.switchAt,
  };
}

/** A request with every default filled and the model resolved to its folder: what the queue stores and engines run. */
export interface GenerationRequest {
  prompt: string;
  negativePrompt: string | null;
  model: { name: string; path: string; refinerPath: string | null };
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  seed: number;
  scheduler: SchedulerName | null;
  refiner: RefinerPass | null;
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
  /** torch dtype the pipelines ran in, and the speed options applied (attention slicing, channels_last, compile...). */
  dtype: string;
  options: Record<string, boolean>;
  /** Pipelines the runner had loaded in its life when it made this image: stays 1 while the model is kept warm. */
  modelLoads: number;
  /** Denoising steps that ran, base and refiner together. */
  stepsRun: number;
  /** The prompt's CLIP tokens; past 75 the runner encodes it in 75-token chunks rather than dropping the rest. */
  promptTokens: number;
  timings: { loadSeconds: number; inferenceSeconds: number; saveSeconds: number };
  versions: Record<string, string>;
}
