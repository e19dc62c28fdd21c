// What a request edits with beyond its start image: the mask (inpaint), checked against what goes with it.
import { KittyError } from "../core/errors.js";
import { LIMITS, type GenerationRequest } from "../core/generation.js";

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
