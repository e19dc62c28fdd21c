// What a generation is, independent of who asks (the MCP tools, REST, the gallery, the CLI) and who runs it (the
// engines): the request, its result and progress, the scheduler and family names, the value limits. Everything
// above and below imports from here; this file imports nothing of the project's (the family table's data and
// defaults are read by src/models/families.ts). One file past 250 lines, as the request's parts (sizes, start
// image, mask, outpaint, control maps, refiner, LoRAs) are read together.

/**
 * Scheduler names the runner accepts; python/diffusers_runner/pipelines.py maps each to a diffusers class, and each
 * family lists the ones that fit it. The trailing, LCM and TCD ones are the few-step SDXL recipes'; flow_euler is
 * the flow-matching families'.
 */
export const SCHEDULERS = [
  "euler",
  "euler_a",
  "dpmpp_2m",
  "dpmpp_2m_karras",
  "ddim",
  "pndm",
  "heun",
  "unipc",
  "euler_trailing",
  "euler_a_trailing",
  "ddim_trailing",
  "lcm",
  "tcd",
  "flow_euler",
] as const;
export type SchedulerName = (typeof SCHEDULERS)[number];

/** How a family's cfg_scale works (python/diffusers_runner/families.py says the same). */
export type Guidance = "cfg" | "distilled" | "true_cfg";

/** One entry of the family table, python/diffusers_runner/families.json, which the runner reads too (families.py). */
export interface FamilySpec {
  label: string;
  /** diffusers classes by role; the control roles run ControlNets (Image: beside a start image; Union: one network for every map). */
  pipelines: { text: string; image?: string; inpaint?: string; edit?: string; control?: string; controlImage?: string; controlUnion?: string; controlUnionImage?: string; controlMulti?: string };
  /** Instruction edits (pipelines.edit): how many images one edit takes, the edited one first. */
  editImages?: number;
  /** A family that only edits (Qwen-Image-Edit): generate_image refuses it. */
  editOnly?: boolean;
  /** false: its ControlNet steers the whole schedule, no start or end (Z-Image). */
  controlSchedule?: boolean;
  denoiser: "unet" | "transformer";
  guidance: Guidance;
  /** true, false, or "true_cfg": a negative prompt runs true CFG at trueCfgScale. */
  negativePrompt: boolean | "true_cfg";
  trueCfgScale?: number;
  /** Guidance acts above this cfg_scale: 1 for classic CFG (absent means 1), 0 for Z-Image and Krea 2. */
  guidanceAbove?: number;
  lora: boolean;
  refiner: boolean;
  /** diffusers' step caches (KITTY_IMAGES_STEP_CACHE) hook into this family's transformer. */
  stepCache?: boolean;
  prompt: { encoder: "clip" | "t5" | "llm"; maxTokens: number | null; tokenizer?: string };
  sizeMultiple: number;
  defaults: { width: number; height: number; steps: number; cfgScale: number; scheduler: SchedulerName | null };
  schedulers: SchedulerName[];
  dtype: Record<"cuda" | "mps" | "cpu", string>;
}

/** Families a model in models.yaml can be (src/models/families.ts reads which from the table); a refiner is only ever another model's helper. */
export type ModelFamily = string;
export type PipelineFamily = ModelFamily | "sdxl_refiner";

/** The bounds every request must fall within, whoever sends it; models.yaml defaults obey them too. */
export const LIMITS = {
  promptChars: 2000,
  size: { min: 256, max: 2048, multipleOf: 8 },
  steps: { min: 1, max: 150 },
  cfgScale: { min: 0, max: 30 },
  seed: { min: 0, max: 2 ** 32 - 1 },
  /** Images per job: seeds seed, seed+1, ... */
  count: { min: 1, max: 4 },
  /** Image-to-image: how much of the schedule runs over the start image (1 repaints it all). */
  strength: { min: 0, max: 1, default: 0.6 },
  loras: { max: 4, weight: { min: -2, max: 2 } },
  /** Outpaint: pixels added on one side at most; the new border is repainted in full unless strength says less. */
  outpaint: { maxSide: 1024, strength: 1 },
  /** upscale_image's hires mode: the image resized by `scale`, then a light image-to-image pass (A1111's hires fix). */
  upscale: { scales: [2, 4], strength: 0.3, esrganMaxSide: 8192 },
  /** An image brought in (data: URL, local file, fetched URL), as bytes before decoding. */
  imageInput: { maxBytes: 20_000_000 },
  /** Inpaint: a mask's edge softened by this many pixels (0 keeps it hard). */
  maskBlur: { min: 0, max: 64, default: 4 },
  /** edit_image: reference images beside the one edited (the family may take fewer: FLUX.1 Kontext none). */
  editReferences: { max: 3 },
  /** ControlNet: maps per job, how hard each steers, and the share of the schedule it steers in. */
  control: { max: 2, strength: { min: 0, max: 2, default: 1 }, start: 0, end: 1 },
} as const;

/** The kinds of control map: canny and lineart edges are made from any picture here; the rest come ready (a CAD render's depth or normals). */
export const CONTROL_TYPES = ["canny", "lineart", "depth", "normal", "scribble", "pose", "tile"] as const;
export type ControlType = (typeof CONTROL_TYPES)[number];

/** One control map of a job: the stored image, the ControlNet that reads it (from models.yaml's folder), and how. */
export interface ControlUse {
  key: string;
  controlnet: string;
  path: string;
  type: ControlType;
  strength: number;
  start: number;
  end: number;
  preprocess: boolean;
}

/** Pixels added on each side of the start image (the server's rounding to the family's size multiple included). */
export interface OutpaintSides {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

/** hires: resized, then a light image-to-image pass (no extra weights); esrgan: an upscaler from models.yaml's folder, tile by tile. */
export const UPSCALE_MODES = ["hires", "esrgan"] as const;
export type UpscaleMode = (typeof UPSCALE_MODES)[number];

/** A batch's seeds: seed, seed+1, ... wrapping within 32 bits (python/diffusers_runner/generate.py does the same). */
export function batchSeeds(seed: number, count: number): number[] {
  return Array.from({ length: count }, (_, index) => (seed + index) % (LIMITS.seed.max + 1));
}

export interface GenerationDefaults {
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  /** null: the scheduler the model folder configures. */
  scheduler: SchedulerName | null;
  refiner: boolean;
}

/** The SDXL refiner pass stays short and gentle: it polishes detail, it does not repaint. */
export const REFINER_LIMITS = { maxSteps: 10, maxCfgScale: 5, switchAt: 0.8, polishStrength: 0.3 } as const;

/**
 * `ensemble`: the base hands its latents to the refiner for the last fifth of the schedule (diffusers' SDXL
 * recipe). `polish`: the base finishes, then the refiner runs a short, light image-to-image pass over the image,
 * as the original images-service did.
 */
export const REFINER_MODES = ["ensemble", "polish"] as const;
export type RefinerMode = (typeof REFINER_MODES)[number];

export interface RefinerPass {
  mode: RefinerMode;
  /** Steps the refiner runs. */
  steps: number;
  cfgScale: number;
  /** ensemble: fraction of the noise schedule the base model runs before the refiner takes over. */
  switchAt: number;
  /** polish: how much of its schedule the refiner runs over the finished image. */
  strength: number;
}

/** The refiner's pass for a job of `steps`: a tenth to a fifth of them, never more than its caps. */
export function refinerPassFor(steps: number, cfgScale: number, mode: RefinerMode = "ensemble"): RefinerPass {
  const share = mode === "ensemble" ? 1 - REFINER_LIMITS.switchAt : REFINER_LIMITS.polishStrength / 3;
  return {
    mode,
    steps: Math.min(REFINER_LIMITS.maxSteps, Math.max(1, Math.round(steps * share))),
    cfgScale: Math.min(REFINER_LIMITS.maxCfgScale, cfgScale),
    switchAt: REFINER_LIMITS.switchAt,
    strength: REFINER_LIMITS.polishStrength,
  };
}

/** A LoRA resolved from models.yaml's `loras` folder, at the weight the job asked for. */
export interface LoraUse {
  name: string;
  path: string;
  weight: number;
}

/** A request with every default filled and the model resolved to its folder: what the queue stores and engines run. */
export interface GenerationRequest {
  prompt: string;
  negativePrompt: string | null;
  /** configPath: for a single-file checkpoint, a diffusers folder whose configs and tokenizers replace the shipped ones. */
  /**
   * `engine`: which engine runs it (absent: diffusers, the runner); `engineModel`: that engine's own name for the
   * model (an AUTOMATIC1111 checkpoint title), where `path` means nothing to it.
   */
  model: {
    name: string;
    path: string;
    refinerPath: string | null;
    configPath?: string | null;
    /** A transformer-only (or UNet-only) single file's base: the diffusers folder supplying the rest of the pipeline. */
    basePath?: string | null;
    engine?: EngineName;
    engineModel?: string | null;
    /** Another engine's model: the family models.yaml declares or its name suggests (graphs differ for SDXL). */
    family?: ModelFamily;
    /** ComfyUI: the user's workflow file, read when the job runs. */
    workflowPath?: string | null;
  };
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  seed: number;
  scheduler: SchedulerName | null;
  refiner: RefinerPass | null;
  /** Images this job makes, seeds batchSeeds(seed, count); absent in jobs queued before batches (one image). */
  count?: number;
  /** Image-to-image: the stored image to start from (its key) and how much to repaint it. */
  initImage?: { key: string; strength: number } | null;
  /**
   * Outpaint: the start image at its own size, placed `left`/`top` into a canvas of width x height, the border
   * generated by the family's inpaint pipeline and the start image's pixels kept as they were.
   */
  outpaint?: OutpaintSides | null;
  /**
   * Inpaint: repaint the start image where this stored image (any size, fitted like the start image) is white,
   * with the family's inpaint pipeline; pixels under black are kept exactly. `blur` softens the edge, in pixels.
   */
  mask?: { key: string; blur: number } | null;
  /** ControlNet: up to two maps that steer the denoising (text-to-image and image-to-image). */
  control?: ControlUse[];
  /** The models.yaml style that worded the prompt (the prompt here is already the styled one). */
  style?: string | null;
  /** Set by edit_image: the stored image to edit, then its references; the prompt is the instruction. */
  edit?: { keys: string[] } | null;
  /** Set by upscale_image: the start image is this job's source, made `scale` times larger. Recorded, not sent to engines. */
  upscale?: { scale: number; mode: UpscaleMode } | null;
  loras?: LoraUse[];
}

/** How many images a request makes (requests stored before batches make one). */
export function imageCount(request: GenerationRequest): number {
  return request.count ?? 1;
}

export interface GenerationProgress {
  step: number;
  totalSteps: number;
}

/** A preview the engine wrote beside a PNG. */
export interface PreviewFile {
  path: string;
  mimeType: string;
  width: number;
  height: number;
  bytes: number;
}

/** The engines a model can run on. */
export const ENGINE_NAMES = ["diffusers", "a1111", "comfyui", "invokeai"] as const;
export type EngineName = (typeof ENGINE_NAMES)[number];

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
  /** What the encoder did not see (a T5/LLM family): tokens past its limit, emphasis syntax taken out. */
  promptNotes?: { tokensDropped?: number; emphasisStripped?: boolean };
  /** One per image: its preview in staging, or null where the engine wrote none. Absent in results staged before previews. */
  previews?: Array<PreviewFile | null>;
  timings: { loadSeconds: number; inferenceSeconds: number; saveSeconds: number };
  versions: Record<string, string>;
  /** What another engine said about the job (AUTOMATIC1111's `info`), kept in the sidecar as it came. */
  engineInfo?: Record<string, unknown>;
}
