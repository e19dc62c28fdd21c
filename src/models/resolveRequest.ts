import { randomInt } from "node:crypto";
import { applyStyle, findStyle } from "./styles.js";
import { checkPromptTokens, type PromptBudget } from "./promptBudget.js";
import { KittyError } from "../core/errors.js";
import { LIMITS, refinerPassFor, type GenerationRequest, type LoraUse, type ModelFamily, type OutpaintSides, type RefinerMode, type SchedulerName } from "../core/generation.js";
import type { ModelCatalog, ModelEntry } from "./catalog.js";
import { FAMILIES } from "./families.js";
import { checkFamilyTakes, defaultsFor, familyOf, familyOfElsewhere } from "./familyRules.js";
import { controlOf, maskOf, type ControlAsk } from "./editArguments.js";
import { outpaintCanvas, sizeLike } from "./imageSizes.js";
import type { ModelsElsewhere } from "./workerModels.js";
import { inspectEntry, inspectModelFolder, type ModelOnDisk } from "./modelFolder.js";

/** What a caller asks for, in any door's words once mapped: every field but the prompt may be left out. */
export interface GenerationAsk {
  prompt: string;
  negativePrompt?: string | undefined;
  model?: string | undefined;
  width?: number | undefined;
  height?: number | undefined;
  steps?: number | undefined;
  cfgScale?: number | undefined;
  seed?: number | undefined;
  scheduler?: SchedulerName | undefined;
  refiner?: boolean | undefined;
  /** Setting it turns the refiner on. */
  refinerMode?: RefinerMode | undefined;
  count?: number | undefined;
  /** Image-to-image: a stored image, named by key, storageUri or downloadUrl (see `images`). */
  initImage?: string | undefined;
  strength?: number | undefined;
  /** Pixels to add on each side of init_image (any left out: none). */
  outpaint?: Partial<OutpaintSides> | undefined;
  /** Inpaint: the mask as the door found it (a stored image or an upload); `coverage`, when known, its white share. */
  mask?: { key: string; coverage?: number | undefined } | undefined;
  maskBlur?: number | undefined;
  /** ControlNet maps, their images found by the door. */
  control?: ControlAsk[] | undefined;
  /** Set by edit_image: an edit-only family (Qwen-Image-Edit) is taken. */
  editing?: boolean | undefined;
  loras?: Array<{ name: string; weight: number }> | undefined;
  /** A models.yaml style: its template words the prompt (and adds its negative words); the request records its name. */
  style?: string | undefined;
}

/** A stored image an init_image names, as the door finds it (null when this server has no such image). */
export type FindImage = (reference: string) => { key: string; width: number; height: number } | null;

/** The model's folder as this host sees it, else as a live worker reported it. */
export function inspectModel(entry: ModelEntry, elsewhere?: ModelsElsewhere): ModelOnDisk {
  const onDisk = inspectEntry(entry);
  if (onDisk.present) return onDisk;
  const told = elsewhere?.model(entry.name);
  return told ? { present: true, family: told.family, problem: null } : onDisk;
}

/**
 * Fills defaults from the model's family and entry, and checks what only the catalog and the disk can know (or, for
 * a front-end on a shared queue, what the GPU workers report: `elsewhere`).
 */
/** A model's default size and its family's size multiple, as a request for it without a size would get them. */
export function defaultSizeOf(entry: ModelEntry, elsewhere?: ModelsElsewhere): { width: number; height: number; multipleOf: number } {
  const family: ModelFamily = entry.engine === "diffusers" ? (familyOf(entry, inspectModel(entry, elsewhere)) ?? "sdxl") : familyOfElsewhere(entry);
  const { width, height } = defaultsFor(entry, family);
  return { width, height, multipleOf: FAMILIES[family]?.sizeMultiple ?? LIMITS.size.multipleOf };
}

export function resolveRequest(ask: GenerationAsk, catalog: ModelCatalog, findImage?: FindImage, elsewhere?: ModelsElsewhere, budget?: PromptBudget): GenerationRequest {
  if (ask.style === undefined) return resolveUnstyled(ask, catalog, findImage, elsewhere, budget);
  const styled = applyStyle(findStyle(catalog.styles, ask.style), ask.prompt, ask.negativePrompt);
  return { ...resolveUnstyled({ ...ask, ...styled }, catalog, findImage, elsewhere, budget), style: ask.style };
}

function resolveUnstyled(ask: GenerationAsk, catalog: ModelCatalog, findImage?: FindImage, elsewhere?: ModelsElsewhere, budget?: PromptBudget): GenerationRequest {
  const name = ask.model ?? catalog.defaultModel;
  if (!name) throw new KittyError("unknown_model", `models.yaml (${catalog.sourcePath}) lists no models; add 'name: /path/to/diffusers-folder'`, "model");
  const entry = withField("model", () => catalog.get(name));
  if (entry.engine !== "diffusers") {
    if (budget) checkPromptTokens(ask, entry.name, familyOfElsewhere(entry), budget);
    return resolveElsewhere(ask, entry);
  }
  const onDisk = inspectModel(entry, elsewhere);
  if (!onDisk.present) throw new KittyError("model_missing", `model '${name}' is in models.yaml but ${onDisk.problem}${elsewhere ? ", and no live GPU worker has it" : ""}`, "model");
  if (onDisk.family === "sdxl_refiner") {
    throw new KittyError("invalid_argument", `model '${name}' is an SDXL refiner; name it as another model's 'refiner' in models.yaml`, "model");
  }
  if (onDisk.unsupported) throw new KittyError("model_unsupported", `model '${name}': ${onDisk.problem}`, "model");
  // A file the runner could not load (a UNet alone, an SD 2.x checkpoint) is refused now, as doctor refuses it, not
  // 5 s into its job. A transformer-only file with a base:, or one whose family models.yaml declares, goes on.
  if (onDisk.problem && !entry.declaredFamily) throw new KittyError("model_unsupported", `model '${name}': ${onDisk.problem}`, "model");
  // A checkpoint whose family only the runner can read (a pickle .ckpt) is taken as SDXL, the family most are today.
  const family: ModelFamily = familyOf(entry, onDisk) ?? "sdxl";
  if (budget) checkPromptTokens(ask, name, family, budget);
  const defaults = defaultsFor(entry, family);
  const steps = ask.steps ?? defaults.steps;
  const cfgScale = ask.cfgScale ?? defaults.cfgScale;

  let refiner: GenerationRequest["refiner"] = null;
  if (ask.refiner === false && ask.refinerMode) {
    throw new KittyError("invalid_argument", "refiner_mode needs the refiner: leave refiner unset or true", "refiner_mode");
  }
  if (ask.refinerMode || (ask.refiner ?? defaults.refiner)) {
    if (!FAMILIES[family]!.refiner) throw new KittyError("invalid_argument", `refiner applies to SDXL models only; model '${name}' is ${family}`, "refiner");
    if (!entry.refinerPath) {
      throw new KittyError("invalid_argument", `model '${name}' has no refiner; add 'refiner: /path/to/refiner-folder' to its models.yaml entry`, "refiner");
    }
    const refinerOnDisk = inspectModelFolder(entry.refinerPath);
    if (!refinerOnDisk.present && !elsewhere?.model(name)?.refiner) throw new KittyError("model_missing", `model '${name}' names a refiner but ${refinerOnDisk.problem}`, "refiner");
    refiner = refinerPassFor(steps, cfgScale, ask.refinerMode ?? "ensemble");
  }

  let size = { width: ask.width ?? defaults.width, height: ask.height ?? defaults.height };
  let initImage: GenerationRequest["initImage"] = null;
  let outpaint: GenerationRequest["outpaint"] = null;
  if (ask.outpaint !== undefined && ask.initImage === undefined) {
    throw new KittyError("invalid_argument", "outpaint extends a start image: give init_image too", "outpaint");
  }
  const mask = maskOf(ask);
  if (ask.initImage !== undefined) {
    const source = findImage?.(ask.initImage) ?? null;
    if (!source) {
      throw new KittyError(
        "not_found",
        `init_image '${ask.initImage}' is not an image of this server: give a key from list_latest_images, or an imageRef's storageUri or downloadUrl`,
        "init_image",
      );
    }
    // Outpaint and inpaint repaint their region in full unless strength says less; image-to-image repaints some.
    const strength = ask.strength ?? (ask.outpaint || mask ? LIMITS.outpaint.strength : LIMITS.strength.default);
    if (Math.floor(steps * strength) < 1) {
      const least = Math.ceil((1 / steps) * 100) / 100;
      throw new KittyError("invalid_argument", `strength ${strength} of ${steps} steps runs no step: use strength ≥ ${least} or more steps`, "strength");
    }
    initImage = { key: source.key, strength };
    if (ask.outpaint) ({ size, outpaint } = outpaintCanvas(ask, source, FAMILIES[family]!.sizeMultiple));
    // Unset sizes follow the start image; a different aspect ratio is cropped around the centre, never stretched.
    else if (ask.width === undefined && ask.height === undefined) size = sizeLike(source.width, source.height, FAMILIES[family]!.sizeMultiple);
  } else if (ask.strength !== undefined) {
    throw new KittyError("invalid_argument", "strength applies to image-to-image only: give init_image too", "strength");
  }

  const scheduler = ask.scheduler ?? defaults.scheduler;
  checkFamilyTakes(ask, name, family, { ...size, cfgScale, scheduler });
  const control = controlOf(ask, { name, family }, { list: () => catalog.controlnets(), folder: catalog.controlnetsDir });
  return {
    prompt: ask.prompt,
    negativePrompt: ask.negativePrompt?.trim() ? ask.negativePrompt : null,
    model: {
      name,
      path: entry.path,
      refinerPath: refiner ? entry.refinerPath : null,
      ...(entry.configPath && { configPath: entry.configPath }),
      ...(entry.basePath && { basePath: entry.basePath }),
    },
    ...size,
    steps,
    cfgScale,
    seed: ask.seed ?? randomInt(LIMITS.seed.min, LIMITS.seed.max + 1),
    scheduler,
    refiner,
    count: ask.count ?? 1,
    initImage,
    ...(outpaint && { outpaint }),
    ...(mask && { mask }),
    ...(control.length > 0 && { control }),
    loras: resolveLoras(ask.loras ?? [], catalog, name, family, elsewhere),
  };
}

/**
 * A model another engine keeps: nothing on disk to check, and only what that engine's text-to-image takes.
 * The family (for the defaults) is declared in models.yaml, else read from the name ("xl" in it: SDXL).
 */
function resolveElsewhere(ask: GenerationAsk, entry: ModelEntry): GenerationRequest {
  for (const [field, given] of [["refiner", ask.refiner || ask.refinerMode], ["init_image", ask.initImage], ["control", ask.control?.length], ["loras", ask.loras?.length]] as const) {
    if (given) throw new KittyError("invalid_argument", `${field} needs a model the diffusers engine runs; model '${entry.name}' runs on ${entry.engine}`, field);
  }
  if (ask.strength !== undefined) throw new KittyError("invalid_argument", "strength applies to image-to-image only: give init_image too", "strength");
  const family = familyOfElsewhere(entry);
  // Our ComfyUI and InvokeAI graphs are SD 1.5's and SDXL's; a newer family there needs the user's own workflow.
  const builtInGraph = entry.engine === "invokeai" || (entry.engine === "comfyui" && !entry.workflowPath);
  if (builtInGraph && family !== "sd15" && family !== "sdxl") {
    throw new KittyError(
      "model_unsupported",
      `model '${entry.name}' is declared ${family}, and the built-in ${entry.engine} graph is SD 1.5's or SDXL's${entry.engine === "comfyui" ? ": give it a workflow of your own ('workflow: my_workflow_api.json')" : ""}`,
      "model",
    );
  }
  const defaults = defaultsFor(entry, family);
  return {
    prompt: ask.prompt,
    negativePrompt: ask.negativePrompt?.trim() ? ask.negativePrompt : null,
    model: {
      name: entry.name,
      path: "",
      refinerPath: null,
      engine: entry.engine,
      engineModel: entry.engineModel,
      family,
      ...(entry.workflowPath && { workflowPath: entry.workflowPath }),
    },
    width: ask.width ?? defaults.width,
    height: ask.height ?? defaults.height,
    steps: ask.steps ?? defaults.steps,
    cfgScale: ask.cfgScale ?? defaults.cfgScale,
    seed: ask.seed ?? randomInt(LIMITS.seed.min, LIMITS.seed.max + 1),
    scheduler: ask.scheduler ?? defaults.scheduler,
    refiner: null,
    count: ask.count ?? 1,
    initImage: null,
    loras: [],
  };
}

function resolveLoras(asked: Array<{ name: string; weight: number }>, catalog: ModelCatalog, model: string, family: ModelFamily, elsewhere?: ModelsElsewhere): LoraUse[] {
  const names = new Set<string>();
  return asked.map(({ name, weight }, position) => {
    const lora = withField(`loras[${position}].name`, () => {
      try {
        return catalog.lora(name);
      } catch (error) {
        // Not in this host's folder: a live worker's will do (the worker runs it from its own folder, by name).
        const told = elsewhere?.lora(name);
        if (told) return { name, path: "", family: told.family };
        throw error;
      }
    });
    if (names.has(name)) throw new KittyError("invalid_argument", `LoRA '${name}' is listed twice; give it once with the weight you want`, "loras");
    names.add(name);
    if (lora.family && lora.family !== family) {
      throw new KittyError("invalid_argument", `LoRA '${name}' is for ${lora.family} models; model '${model}' is ${family}`, `loras[${position}].name`);
    }
    return { name, path: lora.path, weight };
  });
}

/** Runs `lookup`, naming `field` in a KittyError it throws without one. */
function withField<T>(field: string, lookup: () => T): T {
  try {
    return lookup();
  } catch (error) {
    if (error instanceof KittyError && !error.field) throw new KittyError(error.code, error.message, field);
    throw error;
  }
}
