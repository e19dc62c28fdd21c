import type { GenerationRequest, GenerationResult } from "../core/generation.js";

/** The JSON stored beside each PNG: everything needed to know how the image was made, and to make it again. */
export interface ImageSidecar {
  key: string;
  jobId: string;
  createdAt: string;
  engine: string;
  model: string;
  family: string;
  request: Omit<GenerationRequest, "model"> & { model: string };
  seed: number;
  width: number;
  height: number;
  scheduler: string;
  device: string;
  /** dtype and runtime options; absent in sidecars written before they were recorded. */
  dtype?: string;
  options?: Record<string, boolean>;
  versions: Record<string, string>;
  timings: GenerationResult["timings"];
  /** Pipelines the runner had loaded in its life when it made this image: stays 1 while the model is kept warm. */
  modelLoads: number;
  /** Denoising steps that ran, base and refiner together. */
  stepsRun: number;
  /** The prompt's CLIP tokens; absent in sidecars written before it was recorded. */
  promptTokens?: number;
  promptNotes?: { tokensDropped?: number; emphasisStripped?: boolean };
  /** This image's place in its job's batch, for a job of more than one image. */
  batch?: { index: number; count: number };
  /** What another engine said about the image (AUTOMATIC1111's `info`), as it came. */
  engineInfo?: Record<string, unknown>;
  /** The small WebP stored beside the PNG; absent for images made without one. */
  preview?: StoredPreview;
  /** Size of the stored PNG (the REST API's `size`); absent in sidecars written before it was recorded. */
  pngBytes?: number;
  /** The stored images this one was made from (an image-to-image start, an upscale's source). */
  parents?: string[];
}

/** Where a brought image came from: what its sidecar records, and what list/gallery pages show. */
export type UploadOrigin = { from: "data" } | { from: "file"; path: string } | { from: "url"; url: string };

/** The JSON stored beside an upload's PNG (generations have ImageSidecar): `kind` tells them apart on a reindex. */
export interface UploadSidecar {
  kind: "upload";
  key: string;
  createdAt: string;
  width: number;
  height: number;
  /** As it was brought: PNG, JPEG or WEBP (stored as PNG either way). */
  format: string;
  /** The share of white (>= 128) pixels, should it be a mask: one that covers nothing or all is refused at once. */
  coverage?: number;
  /** The bytes as brought, and their SHA-256 (the key is made from it: the same bytes twice are one upload). */
  bytes: number;
  sha256: string;
  pngBytes: number;
  origin: UploadOrigin;
  preview?: StoredPreview;
}

export function isUploadSidecar(value: unknown): value is UploadSidecar {
  const sidecar = value as Partial<UploadSidecar> | null;
  return sidecar?.kind === "upload" && typeof sidecar.key === "string" && typeof sidecar.width === "number" && typeof sidecar.height === "number";
}

/** An upload as the index holds it: the sidecar is its metadata. */
export function uploadRecordOf(sidecar: UploadSidecar): { key: string; createdAt: string; width: number; height: number; metadata: Record<string, unknown> } {
  return { key: sidecar.key, createdAt: sidecar.createdAt, width: sidecar.width, height: sidecar.height, metadata: { ...sidecar } };
}

export interface StoredPreview {
  key: string;
  mimeType: string;
  width: number;
  height: number;
  bytes: number;
}

export function buildSidecar(
  image: { key: string; jobId: string; engine: string; pngBytes?: number; createdAt?: Date; preview?: StoredPreview },
  request: GenerationRequest,
  result: GenerationResult,
  batch?: { index: number; count: number },
): ImageSidecar {
  return {
    key: image.key,
    jobId: image.jobId,
    createdAt: (image.createdAt ?? new Date()).toISOString(),
    engine: image.engine,
    model: request.model.name,
    family: result.family,
    request: { ...request, model: request.model.name },
    seed: result.seed,
    width: result.width,
    height: result.height,
    scheduler: result.scheduler,
    device: result.device,
    dtype: result.dtype,
    options: result.options,
    versions: result.versions,
    timings: result.timings,
    modelLoads: result.modelLoads,
    stepsRun: result.stepsRun,
    promptTokens: result.promptTokens,
    ...(result.promptNotes && { promptNotes: result.promptNotes }),
    ...(batch && { batch }),
    ...(result.engineInfo && { engineInfo: result.engineInfo }),
    ...(image.pngBytes !== undefined && { pngBytes: image.pngBytes }),
    ...(image.preview && { preview: image.preview }),
    ...(parentsOf(request).length > 0 && { parents: parentsOf(request) }),
  };
}

/** The stored images a job was made from, start image first: its mask and control maps follow (an edit's: the edited image, then its references). */
function parentsOf(request: GenerationRequest): string[] {
  return [
    ...(request.initImage ? [request.initImage.key] : []),
    ...(request.mask ? [request.mask.key] : []),
    ...(request.control ?? []).map((control) => control.key),
    ...(request.edit?.keys ?? []),
  ];
}
