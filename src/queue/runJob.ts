// One job's run, from the row taken to the image stored and indexed, each step a function read top to bottom; how a
// run that broke off ends is runEnding.ts's.
import { stat, writeFile } from "node:fs/promises";
import { EngineJobError, type Engine } from "../engines/engine.js";
import { messageOf } from "../core/errors.js";
import { batchSeeds, imageCount, type GenerationResult, type PreviewFile } from "../core/generation.js";
import type { Logger } from "../core/log.js";
import { batchImageKeys, newImageKey } from "../storage/imageKeys.js";
import { previewKey, type ImageStore } from "../storage/imageStore.js";
import { buildSidecar, type ImageSidecar, type StoredPreview } from "../images/sidecar.js";
import { checkPngFile } from "../images/pngInfo.js";
import type { PreviewMaker } from "../images/previewMaker.js";
import type { StagingArea } from "../images/staging.js";
import { JobTakenOver, type Job } from "./job.js";
import type { ImageRecord, JobStore } from "./ports.js";
import { retryWithBackoff, type Backoff } from "./retry.js";
import { settleFailure, StorageRefused, type JobSignals, type RunOutcome } from "./runEnding.js";

export interface JobRunDeps {
  /** The job's row and the image index, on SQLite or Postgres. */
  jobs: JobStore;
  engine: Engine;
  store: ImageStore;
  staging: StagingArea;
  keyPrefix: string;
  backoff: Backoff;
  /**
   * Why the queue waits, for job_status in every process; null clears it. Resolves once written (in order); never
   * rejects: a refusal is logged. A notice that must be gone when the job's end is seen is awaited first.
   */
  setNotice(notice: string | null): Promise<void>;
  observer: RunObserver;
  /** Makes the previews an engine did not write; without one such images are stored without a preview. */
  previewMaker?: PreviewMaker;
  log: Logger;
}

/** What a run tells /metrics: a generation's timings, a storage call tried again. */
export interface RunObserver {
  generated(model: string, result: GenerationResult): void;
  storageRetried(): void;
}

export const NO_OBSERVER: RunObserver = { generated() {}, storageRetried() {} };

/** What the worker is built with and passes on to each run, whichever database holds the jobs. */
export interface WorkerParts {
  engine: Engine;
  store: ImageStore;
  staging: StagingArea;
  /** Every stored key starts with this. */
  keyPrefix: string;
  /** Makes the previews an engine did not write. */
  previewMaker?: PreviewMaker;
  log: Logger;
  timing: {
    /** For an engine that will not start, storage that will not take the image, a database that stays busy. */
    backoff: Backoff;
  };
}

/** A worker's run deps: its parts, its database's calls and where its notices go; /metrics observes later. */
export function jobRunDeps(parts: WorkerParts, jobs: JobStore, setNotice: JobRunDeps["setNotice"]): JobRunDeps {
  const { engine, store, staging, keyPrefix, previewMaker, log, timing } = parts;
  return { jobs, engine, store, staging, keyPrefix, previewMaker, log, backoff: timing.backoff, observer: NO_OBSERVER, setNotice };
}



/**
 * One job's run: generate (or pick up what an earlier run left in staging), store PNG and sidecar, then index
 * the image and mark the job done together. Every way it can end is settled here, once.
 */
export async function runJob(job: Job, deps: JobRunDeps, signals: JobSignals): Promise<RunOutcome> {
  const log = deps.log.child({ jobId: job.id });
  if (job.cancelRequested) {
    // Marked while its earlier run was cut off (a crash): it ends here, and whatever that run staged goes too.
    await deps.staging.remove(job.id);
    await deps.jobs.finish(job.id, "running", "cancelled", { attempt: job.attempts });
    log.info("job cancelled before this run");
    return "finished";
  }
  log.info({ attempt: job.attempts, model: job.request.model.name }, "job running");
  try {
    const keys = batchImageKeys(await deps.jobs.fixImageKey(job.id, newImageKey(deps.keyPrefix, job.id)), imageCount(job.request));
    const sidecars = (await storedByEarlierRun(keys, job.id, deps, log)) ?? (await generateAndStore(job, keys, deps, signals, log));
    // Engine and storage both worked: whatever the queue was waiting for is over, before anyone sees the job done.
    await deps.setNotice(null);
    const records = sidecars.map(indexRecordOf);
    // The images are stored: a busy or full database must not turn that into a failed job. Safe to repeat.
    await retryWithBackoff(() => deps.jobs.completeWithImages(job.id, job.attempts, records), {
      backoff: deps.backoff,
      signal: signals.letGo,
      giveUp: (error) => (error instanceof JobTakenOver ? error : undefined),
      onRetry: (error, retryInMs) => log.warn({ error: messageOf(error), retryInMs }, "could not record the finished job; will retry"),
    });
    await deps.staging.remove(job.id);
    log.info({ keys }, "job done");
    return "finished";
  } catch (error) {
    return settleFailure(job, error, deps, signals, log);
  }
}

/** The job a worker runs now, with the two ways to stop it (see JobSignals). */
export interface CurrentJob {
  job: Job;
  cancel: AbortController;
  letGo: AbortController;
}

/**
 * A taken job's run as every worker does it (the SQLite queue's and a Postgres host's): the cancel mark is read every
 * `cancelPollMs` besides whatever pushes it sooner, and a run whose ending the database refused to record is put back
 * once it answers (fenced by attempt): a job left running by a live worker would never be recovered.
 */
export async function runTakenJob(
  current: CurrentJob,
  deps: JobRunDeps,
  watch: { checkCancel(): void; cancelPollMs: number; stopRetrying: AbortSignal },
): Promise<RunOutcome> {
  const { job } = current;
  const cancelWatch = setInterval(() => watch.checkCancel(), watch.cancelPollMs);
  try {
    const stop = AbortSignal.any([current.cancel.signal, current.letGo.signal]);
    return await runJob(job, deps, { stop, letGo: current.letGo.signal });
  } catch (error) {
    const { jobs, log, backoff } = deps;
    log.error({ jobId: job.id, error: messageOf(error) }, "could not record how the job ended; putting it back in the queue");
    await retryWithBackoff(() => jobs.requeue(job.id, { countAttempt: false, attempt: job.attempts }), {
      backoff,
      signal: watch.stopRetrying,
      giveUp: () => undefined,
      onRetry: (retryError, retryInMs) => log.warn({ jobId: job.id, error: messageOf(retryError), retryInMs }, "could not put the job back; will retry"),
    });
    return "finished";
  } finally {
    clearInterval(cancelWatch);
  }
}

/**
 * An earlier run stored these keys and died before indexing: index what storage holds, generate nothing.
 * Unknown while storage is down (or answers 403 for a key it cannot list): then generate anyway; the keys are
 * fixed, so the upload overwrites rather than duplicates.
 */
async function storedByEarlierRun(keys: string[], jobId: string, { store }: JobRunDeps, log: Logger): Promise<ImageSidecar[] | undefined> {
  try {
    const stored = await Promise.all(keys.map((key) => store.readSidecar(key)));
    if (!stored.every((sidecar) => sidecar?.jobId === jobId)) return undefined;
    // The PNG goes up before its sidecar, so a sidecar means both are there.
    log.info({ keys }, "images already stored by an earlier run; indexing them");
    return stored as ImageSidecar[];
  } catch (error) {
    log.warn({ keys, error: messageOf(error) }, "cannot ask storage whether an earlier run stored these images; generating them");
    return undefined;
  }
}

async function generateAndStore(job: Job, keys: string[], deps: JobRunDeps, signals: JobSignals, log: Logger): Promise<ImageSidecar[]> {
  const pngs = deps.staging.pngPaths(job.id, keys.length);
  const result = (await deps.staging.finished(job.id, keys.length)) ?? (await generate(job, deps, signals, log));
  for (const png of pngs) await checkOutput(png, job);
  const seeds = batchSeeds(result.seed, keys.length);
  const previewPaths = deps.staging.previewPaths(job.id, keys.length);
  const previews: Array<{ path: string; stored: StoredPreview } | undefined> = [];
  for (const [index, key] of keys.entries()) {
    const written = result.previews?.[index] ?? (await deps.previewMaker?.make(pngs[index]!, previewPaths[index]!)) ?? null;
    previews.push(await stagedPreview(key, written));
  }
  const createdAt = Date.now();
  const sidecars = await Promise.all(
    keys.map(async (key, index) =>
      buildSidecar(
        {
          key,
          jobId: job.id,
          engine: job.request.model.engine ?? deps.engine.name,
          pngBytes: (await stat(pngs[index]!)).size,
          // A millisecond apart, so newest-first lists a batch in the order it was made.
          createdAt: new Date(createdAt + index),
          preview: previews[index]?.stored,
        },
        job.request,
        { ...result, seed: seeds[index]! },
        keys.length > 1 ? { index, count: keys.length } : undefined,
      ),
    ),
  );
  // Storage down must not lose a finished image: the PNGs wait in staging while the upload backs off.
  const putAll = async () => {
    for (const [index, key] of keys.entries()) await deps.store.put(key, pngs[index]!, sidecars[index]!, previews[index]?.path);
  };
  await retryWithBackoff(putAll, {
    backoff: deps.backoff,
    signal: signals.stop,
    giveUp: (error) => (deps.store.isPermanentError(error) ? new StorageRefused(`storage refused the image: ${messageOf(error)}`) : undefined),
    onRetry: (error, retryInMs) => {
      deps.observer.storageRetried();
      deps.setNotice(`storage is unavailable (${messageOf(error)}); retrying`);
      log.warn({ error: messageOf(error), retryInMs }, "storage failed; will retry");
    },
  });
  return sidecars;
}

/** The preview the engine wrote for an image, when it did and the file is still there: a missing one is no failure. */
async function stagedPreview(key: string, preview: PreviewFile | null | undefined): Promise<{ path: string; stored: StoredPreview } | undefined> {
  if (!preview || !(await stat(preview.path).then((info) => info.isFile(), () => false))) return undefined;
  const { path, ...facts } = preview;
  return { path, stored: { key: previewKey(key), ...facts } };
}

async function generate(job: Job, deps: JobRunDeps, signals: JobSignals, log: Logger): Promise<GenerationResult> {
  const { engine, jobs, staging } = deps;
  // Stopped while storage was asked about the key: do not start (perhaps spawn) the engine for nothing.
  signals.stop.throwIfAborted();
  await staging.prepare();
  const initImagePath = await fetchStored(job.request.initImage?.key, "start image", staging.initImagePath(job.id), deps, signals, log);
  const maskPath = await fetchStored(job.request.mask?.key, "mask", staging.maskPath(job.id), deps, signals, log);
  const controlPaths: string[] = [];
  for (const [index, control] of (job.request.control ?? []).entries()) {
    controlPaths.push((await fetchStored(control.key, "control map", staging.controlPath(job.id, index), deps, signals, log))!);
  }
  const editPaths: string[] = [];
  for (const [index, key] of (job.request.edit?.keys ?? []).entries()) {
    editPaths.push((await fetchStored(key, index === 0 ? "image to edit" : "reference image", staging.editPath(job.id, index), deps, signals, log))!);
  }
  // Until the first step, say what the wait is (torch importing, then the model loading): job_status shows it, and
  // the CLI's bar with it. The first step clears it.
  const warming = engine.health().state !== "ready";
  let phase: string | null = warming ? `starting the runner, loading ${job.request.model.name}` : null;
  if (phase) await deps.setNotice(phase).catch(() => undefined);
  // A run that ends before its first step (a failed load) must not leave the phase standing for the jobs after it.
  // Awaited where the run ends, so a notice the ending sets (the engine is not available) is written after it.
  const clearPhase = (): Promise<void> => {
    if (phase === null) return Promise.resolve();
    phase = null;
    return deps.setNotice(null).catch(() => undefined);
  };
  const result = await engine.generate(job.request, {
    jobId: job.id,
    outputPaths: staging.pngPaths(job.id, imageCount(job.request)),
    previewPaths: staging.previewPaths(job.id, imageCount(job.request)),
    initImagePath,
    maskPath,
    controlPaths,
    editPaths,
    onProgress: (progress) => {
      if (progress.step > 0) void clearPhase();
      // Advisory: a database too busy for it skips a step, and the job goes on.
      jobs.setProgress(job.id, job.attempts, progress.step, progress.totalSteps).catch((error: unknown) => log.warn({ error: messageOf(error) }, "could not record progress"));
    },
    signal: signals.stop,
  }).finally(clearPhase);
  await staging.saveResult(job.id, result);
  deps.observer.generated(job.request.model.name, result);
  return result;
}

/** A start image or a mask, from storage into staging for the engine. Storage down waits; gone fails the job. */
async function fetchStored(key: string | undefined, what: string, target: string, { store, backoff, setNotice, observer }: JobRunDeps, signals: JobSignals, log: Logger): Promise<string | null> {
  if (!key) return null;
  const bytes = await retryWithBackoff(() => store.readImage(key), {
    backoff,
    signal: signals.stop,
    giveUp: (error) =>
      store.isPermanentError(error)
        ? new EngineJobError("init_image_unavailable", `the ${what} ${key} could not be read from storage: ${messageOf(error)}`)
        : undefined,
    onRetry: (error, retryInMs) => {
      observer.storageRetried();
      setNotice(`storage is unavailable (${messageOf(error)}); retrying`);
      log.warn({ error: messageOf(error), retryInMs }, `could not read the ${what}; will retry`);
    },
  });
  await writeFile(target, bytes);
  return target;
}

/** An engine that wrote no PNG, or one of another size, fails the job with what it made: nothing wrong is stored. */
async function checkOutput(file: string, job: Job): Promise<void> {
  const { width, height } = job.request;
  const size = await checkPngFile(file).catch((error: Error) => ({ problem: `it cannot be read (${error.message})` }));
  if ("problem" in size) throw new EngineJobError("bad_output", `the engine's output for this job is not a whole PNG (${file}): ${size.problem}; nothing was stored`);
  if (size.width !== width || size.height !== height) {
    throw new EngineJobError("bad_output", `the engine made a ${size.width}x${size.height} image, not the ${width}x${height} asked for; nothing was stored`);
  }
}

function indexRecordOf(sidecar: ImageSidecar): ImageRecord {
  const { key, jobId, createdAt, model, width, height, seed } = sidecar;
  return { key, jobId, createdAt, prompt: sidecar.request.prompt, model, width, height, seed, metadata: { ...sidecar } };
}
