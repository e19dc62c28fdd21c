import { z } from "zod";
import { boundedNumber, boundedText, oneOf } from "../../core/arguments.js";
import { KittyError } from "../../core/errors.js";
import { LIMITS, UPSCALE_MODES, type GenerationRequest } from "../../core/generation.js";
import type { ImageSidecar } from "../../images/sidecar.js";
import { catalogWithEngineModels } from "../../models/engineCatalog.js";
import { resolveRequest } from "../../models/resolveRequest.js";
import { modelsOfWorkers } from "../../models/workerModels.js";
import type { ImageRecord } from "../../queue/ports.js";
import type { ModelCatalog } from "../../models/catalog.js";
import { resolveImageInput, type SourceImage } from "../../uploads/imageInputs.js";
import { defineTool } from "./toolKit.js";

const { upscale, size, strength, promptChars } = LIMITS;

export const upscaleImage = defineTool({
  name: "upscale_image",
  icon: "M14 4h6v6M10 20H4v-6M20 4l-7 7M4 20l7-7",
  description:
    "Queue a 2x or 4x copy of an image (hires: light repaint; esrgan: an upscaler). Next: job_status.",
  annotations: { destructiveHint: false },
  input: {
    image: z.string({ error: "image must be a string: an image key, storageUri or downloadUrl" }),
    scale: z.union([z.literal(2), z.literal(4)], { error: `scale must be ${upscale.scales.join(" or ")}` }).optional(),
    mode: oneOf("mode", UPSCALE_MODES).optional(),
    // hires: prompt and model default to the image's own (the summary says which ran). esrgan: model names an
    // upscaler (default the first in the folder), and prompt and strength do not apply.
    prompt: boundedText("prompt", promptChars, { required: false }).optional(),
    model: z.string({ error: "model must be a string: a name from list_models" }).optional(),
    strength: boundedNumber("strength", strength.min, strength.max).optional(),
  },
  output: {
    jobId: z.string(),
    position: z.number().int(),
    width: z.number().int(),
    height: z.number().int(),
  },
  async handler({ image, scale = 2, mode = "hires", prompt, model, strength: asked }, { config, queue, imageInputs, door, log, engineModels, workers }) {
    const source = await resolveImageInput(image, "image", door, imageInputs);
    const made = source.made ? madeHere(source.made) : undefined;
    if (mode === "esrgan") {
      if (workers) throw new KittyError("invalid_argument", "mode esrgan runs on a single machine's queue for now; on a shared queue use mode hires", "mode");
      const request = esrganRequest(source, made, scale, { prompt, model, strength: asked }, config.models);
      const { job, position } = await queue.enqueue(request);
      log.info({ jobId: job.id, upscaler: request.model.name, source: source.key, scale, position }, "ESRGAN upscale queued");
      return {
        structured: { jobId: job.id, position, width: request.width, height: request.height },
        summary: `Queued job ${job.id}: ${source.key} at ${scale}x with ${request.model.name} (${request.width}x${request.height}) at position ${position}. Next: job_status {"jobId":"${job.id}","wait_seconds":30}.`,
      };
    }
    const width = source.width * scale;
    const height = source.height * scale;
    if (width > size.max || height > size.max) {
      const smaller = upscale.scales.filter((each) => source.width * each <= size.max && source.height * each <= size.max);
      throw new KittyError(
        "invalid_argument",
        `scale ${scale} makes ${source.width}x${source.height} ${width}x${height}, past the ${size.max} px limit${smaller.length ? `; use scale ${smaller.join(" or ")}` : ""}`,
        "scale",
      );
    }
    const promptToUse = prompt ?? made?.request.prompt;
    if (!promptToUse) throw new KittyError("invalid_argument", `prompt is needed: ${source.key} was not made here, so its prompt is not known; say what the image shows`, "prompt");
    const modelToUse = model ?? (made && config.models.names().includes(made.model) ? made.model : undefined);
    if (!modelToUse) {
      throw new KittyError("invalid_argument", `model is needed: ${made ? `${source.key} was made with '${made.model}', which models.yaml no longer lists` : `${source.key} was not made here`}`, "model");
    }
    const catalog = await catalogWithEngineModels(config.models, config.engine, engineModels, { model: modelToUse });
    const elsewhere = workers ? modelsOfWorkers(await workers()) : undefined;
    const request: GenerationRequest = {
      ...resolveOrName(() => resolveRequest(
        {
          prompt: promptToUse,
          model: modelToUse,
          width,
          height,
          // The source's own seed: the repaint stays close to what was made.
          seed: made?.request.seed,
          // With the same model, what else the source was made with (its negative prompt, steps, guidance, LoRAs) carries over.
          ...(made && modelToUse === made.model && {
            negativePrompt: made.request.negativePrompt ?? undefined,
            // The source's steps, but at least enough for the repaint to run one (a 2-step source at 0.3 would run none).
            steps: Math.min(LIMITS.steps.max, Math.max(made.request.steps, Math.ceil(1 / Math.max(asked ?? upscale.strength, 0.01)))),
            cfgScale: made.request.cfgScale,
            scheduler: made.request.scheduler ?? undefined,
            loras: made.request.loras?.map(({ name, weight }) => ({ name, weight })),
          }),
          initImage: source.key,
          strength: asked ?? upscale.strength,
        },
        catalog,
        () => source,
        elsewhere,
      )),
      upscale: { scale, mode: "hires" },
    };
    const { job, position } = await queue.enqueue(request);
    log.info({ jobId: job.id, model: request.model.name, source: source.key, scale, position }, "upscale queued");
    return {
      structured: { jobId: job.id, position, width, height },
      summary:
        `Queued job ${job.id}: ${source.key} at ${scale}x (${width}x${height}, ${request.model.name}, ${Math.floor(request.steps * request.initImage!.strength)} steps ` +
        `repainting ${request.initImage!.strength}) at position ${position}. Next: job_status {"jobId":"${job.id}","wait_seconds":30}.`,
    };
  },
});

/**
 * An ESRGAN upscale: the upscaler (named, else the folder's first) run over the source at `scale`, with no prompt,
 * steps or guidance of its own; the source's prompt and seed are carried along for the listing.
 */
function esrganRequest(
  source: SourceImage,
  made: Pick<ImageSidecar, "model" | "request"> | undefined,
  scale: number,
  asked: { prompt?: string | undefined; model?: string | undefined; strength?: number | undefined },
  catalog: ModelCatalog,
): GenerationRequest {
  for (const field of ["prompt", "strength"] as const) {
    if (asked[field] !== undefined) throw new KittyError("invalid_argument", `${field} applies to mode hires; mode esrgan runs the upscaler alone`, field);
  }
  const upscalers = catalog.upscalers().filter((entry) => !entry.problem);
  const where = catalog.upscalersDir ? `in ${catalog.upscalersDir}` : "configured: add 'upscalers: /path/to/esrgan-files' to models.yaml";
  const upscaler = asked.model === undefined ? upscalers[0] : upscalers.find((entry) => entry.name === asked.model);
  if (!upscaler) {
    const known = upscalers.length ? ` (there: ${upscalers.map((entry) => entry.name).join(", ")})` : "";
    throw new KittyError("invalid_argument", `${asked.model === undefined ? "no upscaler" : `no upscaler '${asked.model}'`} ${where}${known}`, "model");
  }
  const width = source.width * scale;
  const height = source.height * scale;
  if (Math.max(width, height) > upscale.esrganMaxSide) {
    throw new KittyError("invalid_argument", `scale ${scale} makes ${source.width}x${source.height} ${width}x${height}, past the ${upscale.esrganMaxSide} px an ESRGAN upscale makes`, "scale");
  }
  return {
    prompt: made?.request.prompt ?? `${source.key} at ${scale}x`,
    negativePrompt: null,
    model: { name: upscaler.name, path: upscaler.path, refinerPath: null, engine: "diffusers" },
    width,
    height,
    steps: 1,
    cfgScale: 0,
    seed: made?.request.seed ?? 0,
    scheduler: null,
    refiner: null,
    count: 1,
    initImage: { key: source.key, strength: 1 },
    upscale: { scale, mode: "esrgan" },
  };
}

/** What the image's sidecar says of how it was made here; undefined for an image from elsewhere (reindexed from a bare PNG). */
function madeHere(record: ImageRecord): Pick<ImageSidecar, "model" | "request"> | undefined {
  const sidecar = record.metadata as Partial<ImageSidecar>;
  return sidecar.request && typeof sidecar.request.prompt === "string" && typeof sidecar.model === "string" ? { model: sidecar.model, request: sidecar.request } : undefined;
}

/** A refusal of the image-to-image pass is the model's (its family has no such pipeline): said as upscale_image's. */
function resolveOrName(resolve: () => GenerationRequest): GenerationRequest {
  try {
    return resolve();
  } catch (error) {
    if (error instanceof KittyError && error.field === "init_image") throw new KittyError(error.code, `upscale_image cannot run on this model: ${error.message}`, "model");
    throw error;
  }
}
