import { KittyError } from "../core/errors.js";

/** `images/YYYYmmdd_HHMMSS_<first 8 of the job id>.png`, as the original images-service named them. */
export function newImageKey(prefix: string, jobId: string, at: Date = new Date()): string {
  const pad = (value: number) => String(value).padStart(2, "0");
  const stamp =
    `${at.getUTCFullYear()}${pad(at.getUTCMonth() + 1)}${pad(at.getUTCDate())}` +
    `_${pad(at.getUTCHours())}${pad(at.getUTCMinutes())}${pad(at.getUTCSeconds())}`;
  return `${prefix}${stamp}_${jobId.replace(/-/g, "").slice(0, 8)}.png`;
}

/** The keys of a batch's images: the job's key, then `<key>_2.png`, `<key>_3.png`... */
export function batchImageKeys(firstKey: string, count: number): string[] {
  return Array.from({ length: count }, (_, index) => (index === 0 ? firstKey : firstKey.replace(/\.png$/, `_${index + 1}.png`)));
}

/** S3's own limit on a key (bytes; our keys are ASCII, so characters too). */
export const MAX_IMAGE_KEY_LENGTH = 1024;

/**
 * Refuses anything that could step outside the prefix before it reaches storage. "." parts are refused too: on the
 * local folder `images/./x.png` is another name for `images/x.png`, which S3 and the index would count as two keys.
 */
export function checkImageKey(key: string, prefix: string): void {
  // The prefix is the operator's (S3_PREFIX); only what follows it comes from a caller.
  const parts = key.slice(prefix.length).split("/");
  const safe =
    key.length <= MAX_IMAGE_KEY_LENGTH && /^[A-Za-z0-9._/-]+$/.test(key) && !parts.some((part) => part === "" || part === "." || part === "..");
  if (!key.startsWith(prefix) || !safe || !key.endsWith(".png")) {
    throw new KittyError(
      "invalid_argument",
      `key must be an image key under '${prefix}' ending in .png, as list_latest_images returns: letters, digits, '.', '_' and '-' ` +
        `between single slashes, no '.' or '..' parts, at most ${MAX_IMAGE_KEY_LENGTH} characters (got ${shownKey(key)})`,
      "key",
    );
  }
}

/** A refused key as a message may quote it: escaped (no raw control characters) and cut short (a key may be megabytes). */
function shownKey(key: string): string {
  const shown = JSON.stringify(key.slice(0, 80));
  return key.length > 80 ? `${shown}... (${key.length} characters)` : shown;
}
