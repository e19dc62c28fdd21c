import type { ImageSidecar, UploadSidecar } from "../images/sidecar.js";

/** What may be stored beside a PNG: a generation's sidecar, or an image a user brought (`kind: "upload"`). */
export type StoredSidecar = ImageSidecar | UploadSidecar;

/** Where finished images live. Each PNG has a JSON sidecar beside it (same key, .json). */
export interface ImageStore {
  readonly kind: "s3" | "local";
  /** Creates the bucket or folder when missing; throws a KittyError that says what to fix. */
  ensureReady(): Promise<void>;
  /** Stores the PNG, its preview (when there is one), then the sidecar: a sidecar present means the image is whole. */
  put(key: string, pngPath: string, sidecar: StoredSidecar, previewPath?: string): Promise<void>;
  /** The stored sidecar, or undefined when the image is not (wholly) stored. */
  readSidecar(key: string): Promise<ImageSidecar | undefined>;
  /** Every stored PNG under `prefix`, in pages as storage hands them out (reindex walks them all). */
  listImages(prefix: string): AsyncIterable<StoredImage>;
  /** A stored PNG's or preview's bytes. */
  readImage(key: string): Promise<Buffer>;
  /** True for a refusal that waiting will not fix (access denied, no such bucket, an unwritable folder). */
  isPermanentError(error: unknown): boolean;
  storageUri(key: string): string;
  downloadUrl(key: string, ttlSeconds: number): Promise<string>;
}

/**
 * File errors waiting will not fix, for either store: the staged PNG gone or unreadable, or (local store) the
 * target folder unwritable.
 */
const PERMANENT_FILE_ERRORS = new Set(["ENOENT", "EACCES", "EPERM", "EISDIR", "ENOTDIR", "EROFS"]);

export function isPermanentFileError(error: unknown): boolean {
  return PERMANENT_FILE_ERRORS.has((error as NodeJS.ErrnoException | undefined)?.code ?? "");
}

export interface StoredImage {
  key: string;
  bytes: number;
  lastModified: Date;
}

export function sidecarKey(pngKey: string): string {
  return pngKey.replace(/\.png$/, ".json");
}

/** A PNG's small WebP, stored beside it and its sidecar. */
export function previewKey(pngKey: string): string {
  return pngKey.replace(/\.png$/, ".preview.webp");
}
