import { open, realpath } from "node:fs/promises";
import { homedir } from "node:os";
import path from "node:path";
import { KittyError } from "../core/errors.js";
import { LIMITS } from "../core/generation.js";
import { keysIn } from "../db/imagePages.js";
import type { ImageIndex, ImageRecord, UploadIndex, UploadRecord } from "../queue/ports.js";
import { fetchImage } from "./fetchImage.js";
import type { ImageUploads } from "./imageUploads.js";

/** An image a request names, wherever it came from: enough to size the job and fetch the pixels. */
export interface SourceImage {
  key: string;
  width: number;
  height: number;
  /** The generation's index row when this server made it (its prompt and model are the upscale's defaults). */
  made: ImageRecord | null;
  /** An upload's share of white pixels, as a mask would read it (unknown for a generation). */
  coverage?: number;
}

/** Which door a call came through: local paths are read for a stdio client (the user's own machine) only. */
export type Door = "stdio" | "http";

export interface ImageInputDeps {
  index: ImageIndex;
  uploads: UploadIndex;
  intake: ImageUploads;
  keyPrefix: string;
  uploadPrefix: string;
  inputDirs: readonly string[];
  fetchHosts: readonly string[];
}

const MAX_BYTES = LIMITS.imageInput.maxBytes;
const DATA_URL = /^data:(image\/(?:png|jpeg|jpg|webp))?((?:;[^,;]*)*?)(;base64)?,/i;

/**
 * Resolves what a caller gave as an image (`init_image`, `mask`, `image`...): a stored key or imageRef (a
 * generation or an upload), a `data:` URL, an absolute local path (stdio only, under KITTY_IMAGES_INPUT_DIRS), or an
 * http(s) URL from a host in KITTY_IMAGES_FETCH_HOSTS. Anything brought in is stored as an upload first.
 */
export async function resolveImageInput(reference: string, field: string, door: Door, deps: ImageInputDeps): Promise<SourceImage> {
  const text = reference.trim();
  if (/^data:/i.test(text)) return fromUpload(await deps.intake.bring(decodeDataUrl(text, field), { from: "data" }, field));

  const known = await storedImage(text, deps);
  if (known) return known;

  if (/^https?:\/\//i.test(text)) {
    const { bytes, url } = await fetchImage(text, field, deps.fetchHosts, MAX_BYTES);
    return fromUpload(await deps.intake.bring(bytes, { from: "url", url }, field));
  }
  if (path.isAbsolute(text) || /^~[/\\]/.test(text)) {
    if (door !== "stdio") {
      throw new KittyError("invalid_argument", `${field}: local file paths are read only for a client on this machine (stdio); over HTTP send a data: URL`, field);
    }
    const file = await readInputFile(text, field, deps.inputDirs);
    return fromUpload(await deps.intake.bring(file.bytes, { from: "file", path: file.path }, field));
  }
  throw new KittyError(
    "not_found",
    `${field} '${text.slice(0, 120)}' is not an image of this server: give a key from list_latest_images, an imageRef's storageUri or downloadUrl, a data: URL (PNG, JPEG or WebP)${door === "stdio" ? ", or an absolute file path" : ""}`,
    field,
  );
}

/** A generation or an upload this server stores, by key, storageUri or downloadUrl. */
async function storedImage(text: string, deps: ImageInputDeps): Promise<SourceImage | null> {
  const made = await deps.index.byReference(text, deps.keyPrefix);
  if (made) return { key: made.key, width: made.width, height: made.height, made };
  for (const key of keysIn(text, deps.uploadPrefix)) {
    const upload = await deps.uploads.byKey(key);
    if (upload) return fromUpload(upload);
  }
  return null;
}

function fromUpload(upload: UploadRecord): SourceImage {
  const coverage = upload.metadata.coverage;
  return { key: upload.key, width: upload.width, height: upload.height, made: null, ...(typeof coverage === "number" && { coverage }) };
}

/** A base64 `data:` URL's bytes; the size is checked from the text's length before anything is decoded. */
export function decodeDataUrl(text: string, field: string): Buffer {
  const header = DATA_URL.exec(text);
  if (!header) throw new KittyError("invalid_argument", `${field}: a data: URL must look like data:image/png;base64,...`, field);
  if (!header[3]) throw new KittyError("invalid_argument", `${field}: the data: URL must be base64 (data:image/png;base64,...)`, field);
  const body = text.slice(header[0].length).replace(/\s+/g, "");
  const decodedBytes = Math.floor((body.length * 3) / 4) - (body.endsWith("==") ? 2 : body.endsWith("=") ? 1 : 0);
  if (decodedBytes > MAX_BYTES) throw tooLarge(field, decodedBytes);
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 === 1) throw new KittyError("invalid_argument", `${field}: the data: URL's base64 is broken`, field);
  const bytes = Buffer.from(body, "base64");
  if (bytes.length === 0) throw new KittyError("invalid_argument", `${field}: the data: URL holds no bytes`, field);
  return bytes;
}

export function tooLarge(field: string, bytes: number): KittyError {
  return new KittyError("invalid_argument", `${field} is ${(bytes / 1e6).toFixed(1)} MB; an image brought in is at most ${MAX_BYTES / 1e6} MB`, field);
}

/** A local file under one of the input folders (after links are followed: a link out of them is refused). */
async function readInputFile(given: string, field: string, dirs: readonly string[]): Promise<{ path: string; bytes: Buffer }> {
  const asked = /^~[/\\]/.test(given) ? path.join(homedir(), given.slice(2)) : given;
  let real: string;
  try {
    real = await realpath(asked);
  } catch {
    throw new KittyError("not_found", `${field}: no file at ${asked}`, field);
  }
  const roots = await Promise.all(dirs.map((dir) => realpath(dir).catch(() => path.resolve(dir))));
  if (!roots.some((root) => real === root || real.startsWith(root.endsWith(path.sep) ? root : root + path.sep))) {
    throw new KittyError("invalid_argument", `${field}: ${asked} is outside the folders images are read from (${roots.join(", ")}); set KITTY_IMAGES_INPUT_DIRS to allow others`, field);
  }
  const handle = await open(real, "r").catch(() => {
    throw new KittyError("invalid_argument", `${field}: ${asked} cannot be read`, field);
  });
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new KittyError("invalid_argument", `${field}: ${asked} is not a file`, field);
    if (info.size > MAX_BYTES) throw tooLarge(field, info.size);
    return { path: real, bytes: await handle.readFile() };
  } finally {
    await handle.close();
  }
}
