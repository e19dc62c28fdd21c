// The sizes that follow from a start image: image-to-image's (the image's aspect ratio) and outpaint's canvas.
import { KittyError } from "../core/errors.js";
import { LIMITS, type OutpaintSides } from "../core/generation.js";

/**
 * The canvas an outpaint makes: the start image plus what is asked on each side, each dimension rounded up to the
 * family's size multiple, the extra going to the right and the bottom (the request records the sides as run).
 */
export function outpaintCanvas(ask: { width?: number | undefined; height?: number | undefined; outpaint?: Partial<OutpaintSides> | undefined }, source: { width: number; height: number }, familyMultiple: number): { size: { width: number; height: number }; outpaint: OutpaintSides } {
  for (const side of ["width", "height"] as const) {
    if (ask[side] !== undefined) throw new KittyError("invalid_argument", `${side} follows from outpaint (the start image's size plus what is added): leave it out`, side);
  }
  const sides = { left: 0, right: 0, top: 0, bottom: 0, ...ask.outpaint };
  if (sides.left + sides.right + sides.top + sides.bottom === 0) {
    throw new KittyError("invalid_argument", "outpaint adds nothing: give left, right, top or bottom in pixels", "outpaint");
  }
  const multiple = Math.max(LIMITS.size.multipleOf, familyMultiple);
  const roundUp = (pixels: number) => Math.ceil(pixels / multiple) * multiple;
  const width = roundUp(source.width + sides.left + sides.right);
  const height = roundUp(source.height + sides.top + sides.bottom);
  if (width > LIMITS.size.max || height > LIMITS.size.max) {
    throw new KittyError("invalid_argument", `outpaint makes ${source.width}x${source.height} ${width}x${height}, past the ${LIMITS.size.max} px limit`, "outpaint");
  }
  sides.right += width - (source.width + sides.left + sides.right);
  sides.bottom += height - (source.height + sides.top + sides.bottom);
  return { size: { width, height }, outpaint: sides };
}

/** A size with the image's aspect ratio inside the limits, each side a multiple of `multipleOf` (the family's; at least 8). */
export function sizeLike(width: number, height: number, multipleOf: number = LIMITS.size.multipleOf): { width: number; height: number } {
  const { min, max } = LIMITS.size;
  const scale = Math.min(1, max / Math.max(width, height)) * Math.max(1, min / Math.min(width, height));
  const snap = (side: number) => Math.min(max, Math.max(min, Math.round((side * scale) / multipleOf) * multipleOf));
  return { width: snap(width), height: snap(height) };
}

/** The size words KITTY's UI sends (`size` on REST generate). */
export const SIZE_WORDS = ["square", "portrait", "landscape"] as const;
export type SizeWord = (typeof SIZE_WORDS)[number];

/**
 * What a size word means for a model whose default size is `defaults`: square keeps the default's pixel count; portrait
 * and landscape are 2:3 and 3:2 at about that count, sides rounded down to 64 (1024² families: 832×1216, the SDXL
 * bucket). A family trained at 512² or less is usually run taller rather than smaller: 512×768 for SD 1.5. A
 * default that is already oblong gives its own sides, turned as asked.
 */
export function orientedSize(word: SizeWord, defaults: { width: number; height: number }, multipleOf: number = LIMITS.size.multipleOf): { width: number; height: number } {
  const snap = (side: number, step: number) => Math.min(LIMITS.size.max, Math.max(LIMITS.size.min, Math.floor(side / step) * step));
  let [short, long] = [Math.min(defaults.width, defaults.height), Math.max(defaults.width, defaults.height)];
  const side = Math.sqrt(defaults.width * defaults.height);
  if (short === long) {
    if (word === "square") return { width: defaults.width, height: defaults.height };
    [short, long] = side <= 512 ? [snap(side, multipleOf), snap(side * 1.5, multipleOf)] : [snap(side * Math.sqrt(2 / 3), 64), snap(side * Math.sqrt(3 / 2), 64)];
  } else if (word === "square") {
    const square = snap(side, Math.max(multipleOf, 64));
    return { width: square, height: square };
  }
  [short, long] = [snap(short, multipleOf), snap(long, multipleOf)];
  return word === "portrait" ? { width: short, height: long } : { width: long, height: short };
}
