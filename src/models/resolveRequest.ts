import { randomInt } from "node:crypto";
import { KittyError } from "../errors.js";
import {
  FAMILY_DEFAULTS,
  LIMITS,
  refinerPassFor,
  type GenerationDefaults,
  type GenerationRequest,
  type ModelFamily,
  type SchedulerName,
} from "../generation.js";
import type { ModelCatalog, ModelEntry } from "./catalog.js";
import { inspectModelFolder, type ModelOnDisk } from "./modelFolder.js";

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
}

/** The family a model runs as: declared in models.yaml, else what its folder says; null when neither says. */
export function familyOf(entry: ModelEntry, onDisk: ModelOnDisk): ModelFamily | null {
  if (entry.declaredFamily) return entry.declaredFamily;
  return onDisk.family === "sd15" || onDisk.family === "sdxl" ? onDisk.family : null;
}

/** The family's defaults with the entry's own on top: what an unset field becomes (list_models shows the same). */
export function defaultsFor(entry: ModelEntry, family: ModelFamily): GenerationDefaults {
  return { ...FAMILY_DEFAULTS[family], ...entry.defaults };
}

/** Fills defaults from the model's family and entry, and checks what only the catalog and the disk can know. */
export function resolveRequest(ask: GenerationAsk, catalog: ModelCatalog): GenerationRequest {
  const name = ask.model ?? catalog.defaultModel;
  if (!name) throw new KittyError("unknown_model", `models.yaml (${catalog.sourcePath}) lists no models; add 'name: /path/to/diffusers-folder'`, "model");
  const entry = withField("model", () => catalog.get(name));
  const onDisk = inspectModelFolder(entry.path);
  if (!onDisk.present) throw new KittyError("model_missing", `model '${name}' is in models.yaml but ${onDisk.problem}`, "model");
  if (onDisk.family === "sdxl_refiner") {
    throw new KittyError("invalid_argument", `model '${name}' is an SDXL refiner; name it as another model's 'refiner' in models.yaml`, "model");
  }
  // A folder whose pipeline class is unknown to us is tried as SDXL, the family most checkpoints are today.
  const family: ModelFamily = familyOf(entry, onDisk) ?? "sdxl";
  const defaults = defaultsFor(entry, family);
  const steps = ask.steps ?? defaults.steps;
  const cfgScale = ask.cfgScale ?? defaults.cfgScale;

  let refiner: GenerationRequest["refiner"] = null;
  if (ask.refiner ?? defaults.refiner) {
    if (family !== "sdxl") throw new KittyError("invalid_argument", `refiner applies to SDXL models only; model '${name}' is ${family}`, "refiner");
    if (!entry.refinerPath) {
      throw new KittyError("invalid_argument", `model '${name}' has no refiner; add 'refiner: /path/to/refiner-folder' to its models.yaml entry`, "refiner");
    }
    const refinerOnDisk = inspectModelFolder(entry.refinerPath);
    if (!refinerOnDisk.present) throw new KittyError("model_missing", `model '${name}' names a refiner but ${refinerOnDisk.problem}`, "refiner");
    refiner = refinerPassFor(steps, cfgScale);
  }

  return {
    prompt: ask.prompt,
    negativePrompt: ask.negativePrompt?.trim() ? ask.negativePrompt : null,
    model: { name, path: entry.path, refinerPath: refiner ? entry.refinerPath : null },
    width: ask.width ?? defaults.width,
    height: ask.height ?? defaults.height,
    steps,
    cfgScale,
    seed: ask.seed ?? randomInt(LIMITS.seed.min, LIMITS.seed.max + 1),
    scheduler: ask.scheduler ?? defaults.scheduler,
    refiner,
  };
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
