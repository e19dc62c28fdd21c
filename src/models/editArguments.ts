// What a request edits or steers with beyond its start image: the mask (inpaint) and the ControlNet maps, each
// checked against what goes with it.
import { KittyError } from "../core/errors.js";
import { LIMITS, type ControlType, type ControlUse, type GenerationRequest, type ModelFamily } from "../core/generation.js";
import type { ControlNetEntry } from "./controlnetFiles.js";
import { FAMILIES } from "./families.js";

/** The mask a request repaints under, checked against what goes with it; null without one. */
export function maskOf(ask: { initImage?: string | undefined; outpaint?: unknown; mask?: { key: string; coverage?: number | undefined } | undefined; maskBlur?: number | undefined }): GenerationRequest["mask"] {
  if (ask.mask === undefined) {
    if (ask.maskBlur !== undefined) throw new KittyError("invalid_argument", "mask_blur softens a mask's edge: give mask too", "mask_blur");
    return null;
  }
  if (ask.initImage === undefined) throw new KittyError("invalid_argument", "mask marks what to repaint in a start image: give init_image too", "mask");
  if (ask.outpaint !== undefined) throw new KittyError("invalid_argument", "mask and outpaint do not go together: an outpaint masks its new border itself", "mask");
  if (ask.mask.coverage === 0) throw new KittyError("invalid_argument", "the mask covers nothing: no pixel is white; paint what to repaint white (black is kept)", "mask");
  if (ask.mask.coverage === 1) throw new KittyError("invalid_argument", "the mask covers the whole image: to repaint all of it, leave mask out and use init_image with strength", "mask");
  return { key: ask.mask.key, blur: ask.maskBlur ?? LIMITS.maskBlur.default };
}

/** A control entry as the door found its image: the rest as asked (unset: full strength, the whole schedule). */
export interface ControlAsk {
  image: { key: string };
  type: ControlType;
  strength?: number | undefined;
  start?: number | undefined;
  end?: number | undefined;
  preprocess?: boolean | undefined;
}

/**
 * Each control map with the ControlNet that reads it: one for the model's family whose name says the map's type,
 * else a union network of that family. Refused, naming the field, where the family runs no ControlNet, the folder has
 * none that fits, or control meets a mask or an outpaint.
 */
export function controlOf(
  ask: { initImage?: string | undefined; mask?: unknown; outpaint?: unknown; control?: readonly ControlAsk[] | undefined },
  model: { name: string; family: ModelFamily },
  controlnets: { list: () => ControlNetEntry[]; folder: string | null },
): ControlUse[] {
  if (!ask.control?.length) return [];
  const family = FAMILIES[model.family]!;
  if (ask.mask !== undefined || ask.outpaint !== undefined) {
    throw new KittyError("invalid_argument", "control goes with text-to-image and init_image here, not with mask or outpaint", "control");
  }
  if (!family.pipelines.control || (ask.initImage !== undefined && !family.pipelines.controlImage)) {
    const running = Object.values(FAMILIES).filter((each) => each.pipelines.control).map((each) => each.label);
    throw new KittyError("invalid_argument", `control does not apply: model '${model.name}' is ${family.label}, which runs no ControlNet here (${running.join(", ")} do)`, "control");
  }
  if (ask.control.length > 1 && !family.pipelines.controlMulti) {
    throw new KittyError("invalid_argument", `control: ${family.label} takes one map at a time (got ${ask.control.length})`, "control");
  }
  const ready = controlnets.list().filter((entry) => !entry.problem && entry.family === model.family);
  return ask.control.map((entry, index) => {
    const { start = LIMITS.control.start, end = LIMITS.control.end } = entry;
    if (start >= end) throw new KittyError("invalid_argument", `control[${index}].start (${start}) must come before its end (${end})`, `control[${index}].start`);
    if (family.controlSchedule === false && (start !== LIMITS.control.start || end !== LIMITS.control.end)) {
      throw new KittyError("invalid_argument", `control[${index}]: ${family.label}'s ControlNet steers the whole schedule; leave start and end out`, `control[${index}].start`);
    }
    const net = ready.find((candidate) => candidate.type === entry.type) ?? ready.find((candidate) => candidate.type === "union");
    if (!net) {
      const where = controlnets.folder ? `in ${controlnets.folder}` : "configured: add 'controlnets: /path/to/controlnet-folders' to models.yaml";
      const there = ready.length ? ` (${family.label} ones there: ${ready.map((candidate) => `${candidate.name} (${candidate.type})`).join(", ")})` : "";
      throw new KittyError("invalid_argument", `control[${index}].type: no ${family.label} ControlNet for '${entry.type}' maps ${where}${there}`, `control[${index}].type`);
    }
    return {
      key: entry.image.key,
      controlnet: net.name,
      path: net.path,
      type: entry.type,
      strength: entry.strength ?? LIMITS.control.strength.default,
      start,
      end,
      preprocess: entry.preprocess ?? true,
    };
  });
}
