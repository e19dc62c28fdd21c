// What each model family takes and how it defaults, read from the family table (families.ts): one rule per field,
// so list_models shows what resolveRequest holds a request to.
import { KittyError } from "../core/errors.js";
import type { FamilySpec, GenerationDefaults, ModelFamily, SchedulerName } from "../core/generation.js";
import type { ModelEntry } from "./catalog.js";
import { FAMILIES, FAMILY_DEFAULTS } from "./families.js";
import type { ModelOnDisk } from "./modelFolder.js";

/** The family a model runs as: declared in models.yaml, else what its folder says; null when neither says. */
export function familyOf(entry: ModelEntry, onDisk: ModelOnDisk): ModelFamily | null {
  if (entry.declaredFamily) return entry.declaredFamily;
  return onDisk.family !== null && onDisk.family in FAMILIES ? onDisk.family : null;
}

/** The family's defaults with the entry's own on top: what an unset field becomes (list_models shows the same). */
export function defaultsFor(entry: ModelEntry, family: ModelFamily): GenerationDefaults {
  return { ...FAMILY_DEFAULTS[family]!, ...entry.defaults };
}

/** What a family takes beyond a prompt, in generate_image's argument names: list_models shows it, resolveRequest holds to it. */
export function familyTakes(family: FamilySpec): string[] {
  if (family.editOnly) return ["edit", ...(family.negativePrompt ? ["negative_prompt"] : [])];
  return [
    ...(family.negativePrompt ? ["negative_prompt"] : []),
    ...(family.pipelines.image ? ["init_image"] : []),
    ...(family.pipelines.inpaint ? ["mask", "outpaint"] : []),
    ...(family.pipelines.control ? ["control"] : []),
    ...(family.pipelines.edit ? ["edit"] : []),
    ...(family.lora ? ["loras"] : []),
    ...(family.refiner ? ["refiner"] : []),
  ];
}

/**
 * Refuses, before anything is queued, what this family cannot use, naming the field and what it does take: a
 * silently dropped negative prompt or a resized image is a wrong answer the agent never hears about.
 */
export function checkFamilyTakes(ask: { negativePrompt?: string | undefined; initImage?: unknown; outpaint?: unknown; mask?: unknown; loras?: readonly unknown[] | undefined; editing?: boolean | undefined }, name: string, familyName: ModelFamily, request: { width: number; height: number; cfgScale: number; scheduler: SchedulerName | null }): void {
  const family = FAMILIES[familyName]!;
  if (family.editOnly && !ask.editing) throw new KittyError("invalid_argument", `model '${name}' is ${family.label}, which edits images only: call edit_image`, "model");
  const what = `model '${name}' is ${family.label}, which takes ${familyTakes(family).join(", ") || "a prompt and sizes only"}`;
  if (ask.negativePrompt?.trim()) {
    if (!family.negativePrompt) throw new KittyError("invalid_argument", `negative_prompt does not apply: ${what}`, "negative_prompt");
    const above = family.guidanceAbove ?? 1;
    if (family.negativePrompt === true && family.guidance !== "distilled" && request.cfgScale <= above) {
      throw new KittyError("invalid_argument", `negative_prompt needs guidance: cfg_scale is ${request.cfgScale}, and a negative prompt only acts above ${above} (model '${name}')`, "negative_prompt");
    }
  }
  // Outpaint and inpaint run the inpaint pipeline, not the image-to-image one: a family may have either without the other.
  const inpaintField = ask.outpaint !== undefined ? "outpaint" : ask.mask !== undefined ? "mask" : null;
  if (inpaintField) {
    if (!family.pipelines.inpaint) throw new KittyError("invalid_argument", `${inpaintField} does not apply: ${what}`, inpaintField);
  } else if (ask.initImage !== undefined && !family.pipelines.image) throw new KittyError("invalid_argument", `init_image does not apply: ${what}`, "init_image");
  if (ask.loras?.length && !family.lora) throw new KittyError("invalid_argument", `loras do not apply: ${what}`, "loras");
  for (const side of ["width", "height"] as const) {
    if (request[side] % family.sizeMultiple !== 0) {
      throw new KittyError("invalid_argument", `${side} must be a multiple of ${family.sizeMultiple} for ${family.label} (got ${request[side]})`, side);
    }
  }
  if (request.scheduler && !family.schedulers.includes(request.scheduler)) {
    throw new KittyError("invalid_argument", `scheduler ${request.scheduler} does not fit ${family.label}; it takes ${family.schedulers.join(", ")}`, "scheduler");
  }
}

/** A model another engine serves: its declared family, else SDXL by its name, else SD 1.5. */
export function familyOfElsewhere(entry: ModelEntry): ModelFamily {
  return entry.declaredFamily ?? (/xl/i.test(`${entry.engineModel ?? ""} ${entry.name}`) ? "sdxl" : "sd15");
}
