import { messageOf } from "../core/errors.js";
import type { GenerationRequest } from "../core/generation.js";
import type { Logger } from "../core/log.js";
import type { ImageIndex, ImageRecord, JobStore, UploadIndex } from "./ports.js";
import type { ImageStore, StoredImage } from "../storage/imageStore.js";
import { readPngInfo } from "../images/pngInfo.js";
import { isUploadSidecar, uploadRecordOf } from "../images/sidecar.js";

export interface ReindexSummary {
  /** PNGs storage holds under the prefix. */
  scanned: number;
  added: number;
  alreadyIndexed: number;
  /** Indexed from what the PNG says about itself: its sidecar is missing or unreadable. */
  withoutSidecar: number;
  /** Could not be read at all; named in the log. */
  unreadable: number;
  /** Images users brought (under the uploads prefix) indexed again from their sidecars. */
  uploadsAdded: number;
}

/**
 * Rebuilds the image index from storage, so losing the SQLite file never loses the gallery: every PNG under the
 * prefix is indexed from its JSON sidecar, or, without one, from the PNG's own size and text chunks. Idempotent
 * (an indexed key is left as it is) and safe while a server runs: each image is one short transaction.
 */
export async function reindex(deps: { jobs: JobStore; images: ImageIndex; store: ImageStore; keyPrefix: string; uploads?: { index: UploadIndex; prefix: string }; log: Logger }): Promise<ReindexSummary> {
  const summary: ReindexSummary = { scanned: 0, added: 0, alreadyIndexed: 0, withoutSidecar: 0, unreadable: 0, uploadsAdded: 0 };
  for await (const image of deps.store.listImages(deps.keyPrefix)) {
    summary.scanned++;
    if ((await deps.images.byKey(image.key)) !== undefined) {
      summary.alreadyIndexed++;
      continue;
    }
    try {
      const { record, fromSidecar } = await recordFor(image, deps.store);
      // The image's row and its job's, in one transaction; a job that exists already is left as it is.
      await deps.jobs.insertRecovered(requestOf(record), [record]);
      summary.added++;
      if (!fromSidecar) summary.withoutSidecar++;
    } catch (error) {
      summary.unreadable++;
      deps.log.warn({ key: image.key, error: messageOf(error) }, "could not index a stored image");
    }
  }
  if (deps.uploads) summary.uploadsAdded = await reindexUploads(deps.uploads.index, deps.uploads.prefix, deps.store, deps.log);
  return summary;
}

/** Uploads are whole only with their sidecar (it goes up last): a PNG without one is an upload cut short, and skipped. */
async function reindexUploads(uploads: UploadIndex, prefix: string, store: ImageStore, log: Logger): Promise<number> {
  let added = 0;
  for await (const image of store.listImages(prefix)) {
    if (await uploads.byKey(image.key)) continue;
    const sidecar = await store.readSidecar(image.key).catch(() => undefined);
    if (!isUploadSidecar(sidecar) || sidecar.key !== image.key) {
      log.warn({ key: image.key }, "an upload without its sidecar was left unindexed");
      continue;
    }
    await uploads.add(uploadRecordOf(sidecar));
    added++;
  }
  return added;
}

async function recordFor(image: StoredImage, store: ImageStore): Promise<{ record: ImageRecord; fromSidecar: boolean }> {
  const sidecar = await store.readSidecar(image.key).catch(() => undefined);
  if (sidecar?.key === image.key) {
    const { key, jobId, createdAt, model, width, height, seed } = sidecar;
    return { record: { key, jobId, createdAt, prompt: sidecar.request.prompt, model, width, height, seed, metadata: { ...sidecar } }, fromSidecar: true };
  }
  // No sidecar: what the PNG says. The runner writes its settings in a "kitty-images" text chunk; other tools'
  // PNGs may carry AUTOMATIC1111's "parameters" (prompt on the first line).
  const png = readPngInfo(await store.readImage(image.key));
  const ours = parseJson(png.text["kitty-images"]);
  const prompt = typeof ours?.prompt === "string" ? ours.prompt : (png.text.parameters?.split("\n")[0] ?? "");
  const record: ImageRecord = {
    key: image.key,
    // The key was never this job's: a stable id of its own, so a second run finds the same row.
    jobId: `reindexed:${image.key}`,
    createdAt: image.lastModified.toISOString(),
    prompt,
    model: typeof ours?.model === "string" ? ours.model : "",
    width: png.width,
    height: png.height,
    seed: typeof ours?.seed === "number" ? ours.seed : 0,
    metadata: { source: "png", pngBytes: image.bytes, ...(ours ?? {}), ...(png.text.parameters && { parameters: png.text.parameters }) },
  };
  return { record, fromSidecar: false };
}

/**
 * The request the recovered job row carries, shaped as the queue stores requests (job_status reads its model's
 * name and its prompt). The model's folder is unknown now: it may have moved since.
 */
function requestOf(record: ImageRecord): GenerationRequest {
  const asked = (record.metadata.request ?? record.metadata) as Partial<Record<keyof GenerationRequest, unknown>>;
  const number = (value: unknown, fallback: number) => (typeof value === "number" ? value : fallback);
  return {
    prompt: record.prompt,
    negativePrompt: typeof asked.negativePrompt === "string" ? asked.negativePrompt : null,
    model: { name: record.model, path: "", refinerPath: null },
    width: record.width,
    height: record.height,
    steps: number(asked.steps, 0),
    cfgScale: number(asked.cfgScale, 0),
    seed: record.seed,
    scheduler: null,
    refiner: null,
  };
}

function parseJson(text: string | undefined): Record<string, unknown> | null {
  if (!text) return null;
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === "object" && value !== null ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}
