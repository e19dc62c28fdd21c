// The parts every app is built from, whichever database holds the queue: the engine, storage, links, and what a
// worker takes from the config.
import path from "node:path";
import type { Config } from "../config.js";
import { messageOf } from "../core/errors.js";
import type { EngineName } from "../core/generation.js";
import type { Logger } from "../core/log.js";
import { A1111Engine } from "../engines/a1111.js";
import { AppEngine } from "../engines/appEngine.js";
import type { Engine } from "../engines/engine.js";
import { ComfyUIEngine } from "../engines/comfyui.js";
import { DiffusersEngine } from "../engines/diffusers.js";
import { EngineRouter } from "../engines/engineRouter.js";
import { InvokeAIEngine } from "../engines/invokeai.js";
import { pythonPreviewMaker } from "../images/previewMaker.js";
import { StagingArea } from "../images/staging.js";
import { DeferredS3Store } from "../storage/deferredS3.js";
import { imageLinks, type ImageLinks } from "../storage/imageLinks.js";
import type { ImageStore } from "../storage/imageStore.js";
import type { EngineModels } from "../models/engineCatalog.js";
import { LocalImageStore } from "../storage/local.js";
import type { ImageIndex, UploadIndex } from "../queue/ports.js";
import type { ImageInputDeps } from "../uploads/imageInputs.js";
import { ImageUploads, pythonNormalizer } from "../uploads/imageUploads.js";
import { TIMING } from "./timing.js";

export function createEngine(config: Config, log: Logger): EngineRouter {
  return new EngineRouter(config.engine, (name) => {
    const engineLog = log.child({ component: "engine", engine: name });
    if (name === "a1111") return new A1111Engine({ baseUrl: config.a1111.baseUrl, auth: config.a1111.auth, timing: { jobBaseMs: config.a1111.jobTimeoutMs } }, engineLog);
    if (name === "comfyui") return new ComfyUIEngine({ baseUrl: config.comfyui.baseUrl, timing: { jobBaseMs: config.comfyui.jobTimeoutMs } }, engineLog);
    if (name === "invokeai") return new InvokeAIEngine({ baseUrl: config.invokeai.baseUrl, timing: { jobBaseMs: config.invokeai.jobTimeoutMs } }, engineLog);
    const { python, packageDir, env, jobDeadline, brokenRetryMs } = config.runner;
    return new DiffusersEngine(
      { python, packageDir, env, readyTimeoutMs: TIMING.runnerReadyTimeoutMs, jobDeadline, startAttempts: TIMING.runnerStartAttempts, brokenRetryMs },
      engineLog,
    );
  });
}

export function createStore(config: Config): ImageStore {
  return config.storage.kind === "s3" ? new DeferredS3Store(config.storage.s3) : new LocalImageStore(path.join(config.home, "files"));
}

export function checkStoreSoon(store: ImageStore, log: Logger): void {
  // Checked in the background, after the client's first requests: storage down or slow at start (MinIO still
  // booting at login) must not keep the tools away; an upload makes sure of the bucket first and retries.
  setTimeout(() => {
    store.ensureReady().catch((error: Error) => log.warn({ error: error.message }, "storage is not reachable yet; uploads will retry"));
  }, TIMING.storageCheckDelayMs).unref();
}

/** What a worker takes from the config, whichever queue it runs on: staging, keys, previews, its log. */
export function workerParts(config: Config, log: Logger) {
  return {
    staging: new StagingArea(config.stagingDir),
    keyPrefix: config.keyPrefix,
    previewMaker: pythonPreviewMaker(config.runner.python, config.runner.packageDir, log.child({ component: "previews" })),
    log: log.child({ component: "worker" }),
  };
}

/** Where the doors' image arguments may come from, and where a brought image is kept (uploads/). */
export function imageInputsFor(config: Config, store: ImageStore, index: ImageIndex, uploads: UploadIndex, log: Logger): ImageInputDeps {
  const intake = new ImageUploads({
    store,
    uploads,
    normalize: pythonNormalizer(config.runner.python, config.runner.packageDir),
    prefix: config.uploadPrefix,
    workDir: path.join(config.stagingDir, "uploads"),
    log: log.child({ component: "uploads" }),
  });
  return { index, uploads, intake, keyPrefix: config.keyPrefix, uploadPrefix: config.uploadPrefix, inputDirs: config.inputs.dirs, fetchHosts: config.inputs.fetchHosts };
}

/** `filesBaseUrl`, set by the HTTP door: local images get signed links to its /files route instead of file:// URLs. */
export function linksFor(config: Config, store: ImageStore, filesBaseUrl: string | undefined): ImageLinks {
  return imageLinks(store, config.presignTtlSeconds, filesBaseUrl ? { baseUrl: filesBaseUrl, home: config.home } : undefined);
}

/** Asks an engine that is another app what it offers; any other engine (or none of that name) offers nothing here. */
export function engineModelsOf(engine: Engine): (name: EngineName) => Promise<EngineModels> {
  return async (name) => {
    const named = engine instanceof EngineRouter ? engine.engine(name) : null;
    if (!(named instanceof AppEngine)) return { reachable: false, problem: `no ${name} engine here` };
    try {
      return { reachable: true, models: await named.models() };
    } catch (error) {
      return { reachable: false, problem: messageOf(error) };
    }
  };
}
