import { createHash, randomUUID } from "node:crypto";
import { mkdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { KittyError, messageOf } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import type { UploadIndex, UploadRecord } from "../queue/ports.js";
import { previewKey, type ImageStore } from "../storage/imageStore.js";
import { uploadRecordOf, type StoredPreview, type UploadOrigin, type UploadSidecar } from "../images/sidecar.js";

/** Decodes brought bytes and writes them as a PNG with a preview: Pillow in a short process (no torch). */
export type ImageNormalizer = (source: string, pngPath: string, previewPath: string) => Promise<NormalizedImage>;

export interface NormalizedImage {
  width: number;
  height: number;
  format: string;
  /** The share of pixels at or above mid-grey: what a mask of this image would repaint. */
  coverage: number;
  preview: Omit<StoredPreview, "key">;
}

/** The runner's python -m diffusers_runner.uploads: a bad image exits 3 with its reason, which becomes the error. */
export function pythonNormalizer(python: string, packageDir: string): ImageNormalizer {
  return async (source, pngPath, previewPath) => {
    const { execa } = await import("execa");
    const done = await execa(python, ["-m", "diffusers_runner.uploads", source, pngPath, previewPath], { cwd: packageDir, timeout: 60_000, reject: false });
    if (done.exitCode === 3) throw new BadImage(done.stderr.trim());
    if (done.exitCode !== 0) throw new Error(`the image reader failed (exit ${done.exitCode ?? done.signal}): ${done.stderr.trim().split("\n").at(-1) ?? ""}`);
    return JSON.parse(done.stdout) as NormalizedImage;
  };
}

/** Bytes that decode as no image this server takes, with the reader's reason. */
export class BadImage extends Error {}

/**
 * Stores images users bring as uploads: checked by decoding (not by name or declared type), kept as PNG with a
 * preview and a sidecar under the uploads prefix, and indexed apart from generations. Content-addressed, so
 * bringing the same image again costs a lookup.
 */
export class ImageUploads {
  constructor(
    private readonly deps: { store: ImageStore; uploads: UploadIndex; normalize: ImageNormalizer; prefix: string; workDir: string; log: Logger },
  ) {}

  keyFor(bytes: Buffer): { key: string; sha256: string } {
    const sha256 = createHash("sha256").update(bytes).digest("hex");
    return { key: `${this.deps.prefix}${sha256.slice(0, 32)}.png`, sha256 };
  }

  /** The upload for these bytes, stored and indexed; `field` is named in the error when they are no image. */
  async bring(bytes: Buffer, origin: UploadOrigin, field: string): Promise<UploadRecord> {
    const { key, sha256 } = this.keyFor(bytes);
    const known = await this.deps.uploads.byKey(key);
    if (known) return known;
    await mkdir(this.deps.workDir, { recursive: true });
    const base = path.join(this.deps.workDir, `upload-${randomUUID()}`);
    const [source, png, preview] = [`${base}.in`, `${base}.png`, `${base}.preview.webp`];
    try {
      await writeFile(source, bytes);
      let facts: NormalizedImage;
      try {
        facts = await this.deps.normalize(source, png, preview);
      } catch (error) {
        if (error instanceof BadImage) throw new KittyError("invalid_argument", `${field} is not an image this server takes: ${error.message}`, field);
        throw error;
      }
      const pngBytes = (await stat(png)).size;
      const sidecar: UploadSidecar = {
        kind: "upload",
        key,
        createdAt: new Date().toISOString(),
        width: facts.width,
        height: facts.height,
        format: facts.format,
        coverage: facts.coverage,
        bytes: bytes.length,
        sha256,
        pngBytes,
        origin,
        preview: { key: previewKey(key), ...facts.preview },
      };
      await this.deps.store.put(key, png, sidecar, preview).catch((error: unknown) => {
        throw new KittyError("storage_unavailable", `${field} could not be stored as an upload: ${messageOf(error)}`, field);
      });
      const record = uploadRecordOf(sidecar);
      await this.deps.uploads.add(record);
      this.deps.log.info({ key, from: origin.from, width: facts.width, height: facts.height, bytes: bytes.length }, "image brought in as an upload");
      return record;
    } finally {
      await Promise.all([source, png, preview].map((file) => rm(file, { force: true })));
    }
  }
}
