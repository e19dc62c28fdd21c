import { KittyError } from "../errors.js";

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

/** Refuses anything that could step outside the prefix before it reaches storage. */
export function checkImageKey(key: string, prefix: string): void {
  const safe = /^[A-Za-z0-9._/-]+$/.test(key) && !key.split("/").includes("..") && !key.includes("//");
  if (!key.startsWith(prefix) || !safe || !key.endsWith(".png")) {
    throw new KittyError(
      "invalid_argument",
      `key must be an image key under '${prefix}' ending in .png, as list_latest_images returns (got '${key}')`,
    );
  }
}
