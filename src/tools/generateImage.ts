import { randomInt } from "node:crypto";
import { z } from "zod";
import type { GenerationRequest } from "../engines/engine.js";
import { SCHEDULERS } from "../engines/schedulers.js";
import { KittyError } from "../errors.js";
import { FAMILY_DEFAULTS, inspectModelFolder, REFINER_LIMITS, type ModelCatalog, type ModelFamily } from "../models.js";
import { boundedInt, boundedNumber, boundedText, defineTool, oneOf } from "./toolKit.js";

const MAX_SEED = 2 ** 32 - 1;

export const generateImage = defineTool({
  name: "generate_image",
  title: "Generate an image",
  description:
    "Queue a text-to-image job on the local Stable Diffusion engine. Returns at once with a jobId; " +
    "poll job_status (with wait_seconds) until it is done, then select_image for a downloadable imageRef. " +
    "Unset fields take the model's defaults (SDXL 1024x1024, SD 1.5 512x512; 30 steps; cfg 7).",
  input: {
    prompt: boundedText("prompt", 2000, "What the image shows.", { required: true }),
    negative_prompt: boundedText("negative_prompt", 2000, "What the image must not show.", { required: false }).optional(),
    model: z.string({ error: "model must be a string: a name from list_models" }).describe("A model name from list_models; default: the first in models.yaml.").optional(),
    width: boundedInt("width", 256, 2048, "Image width in pixels.", 8).optional(),
    height: boundedInt("height", 256, 2048, "Image height in pixels.", 8).optional(),
    steps: boundedInt("steps", 1, 150, "Denoising steps.").optional(),
    cfg_scale: boundedNumber("cfg_scale", 0, 30, "Classifier-free guidance: how closely to follow the prompt.").optional(),
    seed: boundedInt("seed", 0, MAX_SEED, "Random seed; the same seed and settings give the same image. Default: random.").optional(),
    scheduler: oneOf("scheduler", SCHEDULERS, "Sampler. Default: the model's own (SD 1.5: euler_a).").optional(),
    refiner: z
      .boolean({ error: "refiner must be true or false" })
      .describe("SDXL only: finish with the refiner model configured in models.yaml (at most 10 steps, cfg at most 5).")
      .optional(),
  },
  output: {
    jobId: z.string(),
    status: z.literal("queued"),
    position: z.number().int(),
    model: z.string(),
    width: z.number().int(),
    height: z.number().int(),
    steps: z.number().int(),
    seed: z.number().int(),
  },
  async handler(args, { config, jobs, worker, log }) {
    const request = resolveRequest(args, config.models);
    const job = jobs.enqueue(request);
    worker.wake();
    const position = jobs.position(job);
    log.info({ jobId: job.id, model: request.model.name, position }, "job queued");
    return {
      structured: {
        jobId: job.id,
        status: "queued" as const,
        position,
        model: request.model.name,
        width: request.width,
        height: request.height,
        steps: request.steps,
        seed: request.seed,
      },
      summary:
        `Queued job ${job.id} (${request.model.name}, ${request.width}x${request.height}, ${request.steps} steps, seed ${request.seed}) ` +
        `at position ${position}. Next: job_status {"jobId":"${job.id}","wait_seconds":30}.`,
    };
  },
});

type GenerateArgs = {
  prompt: string;
  negative_prompt?: string | undefined;
  model?: string | undefined;
  width?: number | undefined;
  height?: number | undefined;
  steps?: number | undefined;
  cfg_scale?: number | undefined;
  seed?: number | undefined;
  scheduler?: string | undefined;
  refiner?: boolean | undefined;
};

/** Fills defaults from the model's family and entry, and checks what only the catalog can know. */
export function resolveRequest(args: GenerateArgs, catalog: ModelCatalog): GenerationRequest {
  const name = args.model ?? catalog.defaultModel;
  if (!name) throw new KittyError("unknown_model", `models.yaml (${catalog.sourcePath}) lists no models; add 'name: /path/to/diffusers-folder'`);
  const entry = catalog.get(name);
  const onDisk = inspectModelFolder(entry.path);
  if (!onDisk.present) throw new KittyError("model_missing", `model '${name}' is in models.yaml but ${onDisk.problem}`);
  if (onDisk.family === "sdxl_refiner") {
    throw new KittyError("invalid_argument", `model '${name}' is an SDXL refiner; name it as another model's 'refiner' in models.yaml`);
  }
  const family: ModelFamily = entry.declaredFamily ?? onDisk.family ?? "sdxl";
  const defaults = { ...FAMILY_DEFAULTS[family], ...entry.defaults };
  const steps = args.steps ?? defaults.steps;
  const cfgScale = args.cfg_scale ?? defaults.cfgScale;

  const wantsRefiner = args.refiner ?? defaults.refiner;
  let refiner: GenerationRequest["refiner"] = null;
  if (wantsRefiner) {
    if (family !== "sdxl") throw new KittyError("invalid_argument", `refiner applies to SDXL models only; model '${name}' is ${family}`);
    if (!entry.refinerPath) {
      throw new KittyError("invalid_argument", `model '${name}' has no refiner; add 'refiner: /path/to/refiner-folder' to its models.yaml entry`);
    }
    const refinerOnDisk = inspectModelFolder(entry.refinerPath);
    if (!refinerOnDisk.present) throw new KittyError("model_missing", `model '${name}' names a refiner but ${refinerOnDisk.problem}`);
    refiner = {
      // the refiner finishes the last fifth of the schedule, never more than its cap
      steps: Math.min(REFINER_LIMITS.maxSteps, Math.max(1, Math.round(steps * (1 - REFINER_LIMITS.switchAt)))),
      cfgScale: Math.min(REFINER_LIMITS.maxCfgScale, cfgScale),
      switchAt: REFINER_LIMITS.switchAt,
    };
  }

  return {
    prompt: args.prompt,
    negativePrompt: args.negative_prompt?.trim() ? args.negative_prompt : null,
    model: { name, path: entry.path, refinerPath: refiner ? entry.refinerPath : null },
    width: args.width ?? defaults.width,
    height: args.height ?? defaults.height,
    steps,
    cfgScale,
    seed: args.seed ?? randomInt(0, MAX_SEED + 1),
    scheduler: args.scheduler ?? defaults.scheduler,
    refiner,
  };
}
