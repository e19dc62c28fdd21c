import { McpServer } from "@modelcontextprotocol/server";
import path from "node:path";
import type { Config } from "../config.js";
import { databaseBusy, openDatabase, type Db } from "../db/sqlite/database.js";
import { A1111Engine } from "../engines/a1111.js";
import { AppEngine } from "../engines/appEngine.js";
import { ComfyUIEngine } from "../engines/comfyui.js";
import { InvokeAIEngine } from "../engines/invokeai.js";
import { DiffusersEngine } from "../engines/diffusers.js";
import { EngineRouter } from "../engines/engineRouter.js";
import type { Engine } from "../engines/engine.js";
import { KittyError, messageOf } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { JobQueue } from "../queue/jobQueue.js";
import { JobStore } from "../db/sqlite/jobs.js";
import type { WorkerInfo } from "../db/postgres/jobs.js";
import { sqliteQueueStore } from "../queue/queueStore.js";
import type { RunObserver } from "../queue/runJob.js";
import { Worker, type WorkerOptions } from "../queue/worker.js";
import { WorkerLease } from "../db/sqlite/lease.js";
import { ImageIndex, type ImageIndexReader } from "../db/sqlite/images.js";
import { imageLinks, type ImageLinks } from "../storage/imageLinks.js";
import type { ImageStore } from "../storage/imageStore.js";
import { DeferredS3Store } from "../storage/deferredS3.js";
import { LocalImageStore } from "../storage/local.js";
import { pythonPreviewMaker } from "../images/previewMaker.js";
import { StagingArea } from "../images/staging.js";
import { cancelJob } from "../mcp/tools/cancelJob.js";
import { registerGalleryApp } from "../mcp/tools/galleryApp.js";
import { generateImage } from "../mcp/tools/generateImage.js";
import { jobStatus } from "../mcp/tools/jobStatus.js";
import { listLatestImages } from "../mcp/tools/listLatestImages.js";
import { listModels, listModelsWithWorkers } from "../mcp/tools/listModels.js";
import { selectImage } from "../mcp/tools/selectImage.js";
import { registerTool, type AnyTool, type ToolDeps } from "../mcp/tools/toolKit.js";

export const VERSION = "0.2.0";

const TOOLS: AnyTool[] = [generateImage, jobStatus, listLatestImages, selectImage, cancelJob, listModels];

/** What runs jobs in this process, as the doors see it: /healthz asks whether it holds the queue, /metrics listens. */
export interface JobRunner {
  readonly holdsQueue: boolean;
  observe(observer: RunObserver): void;
}

/** Everything one process runs, whatever door it serves: queue, worker, engine, storage, index. */
export interface App {
  config: Config;
  log: Logger;
  /** The embedded SQLite database; null when the queue is on Postgres. */
  db: Db | null;
  queue: JobQueue;
  index: ImageIndexReader;
  store: ImageStore;
  links: ImageLinks;
  engine: Engine;
  /** null: this process runs no jobs (a Postgres front-end without --worker). */
  worker: JobRunner | null;
  /** The GPU workers in the shared registry (Postgres), for list_models and /healthz; null on SQLite. */
  workers: (() => Promise<WorkerInfo[]>) | null;
  /** A database error a caller can act on (SQLite locked, Postgres restarting) as a typed error; null for any other. */
  databaseTrouble(error: unknown, doing: string): KittyError | null;
  /** Stops the worker (the running job stays queued for the next start), the engine and the database. */
  close(): Promise<void>;
}

export interface AppOverrides {
  /**
   * Whether this process runs jobs. SQLite: yes unless false, while it holds the lease (a CLI that only asks passes
   * false). Postgres: only when true (`serve --worker`, `kitty-images worker`); front-ends only queue, report and list.
   */
  runWorker?: boolean;
  /** Set by the HTTP door: local images get signed links to its /files route instead of file:// URLs. */
  filesBaseUrl?: string;
  /** Fast tests run the real queue, worker and storage around a stand-in engine. */
  engine?: Engine;
  timing?: Partial<WorkerOptions["timing"]>;
}

const STORAGE_CHECK_DELAY_MS = 300;
const QUICK_BUSY_TIMEOUT_MS = 250;
/** Starts in a row (backed off 1, 2, 4, 8 s by the worker) before a runner that will not start counts as broken. */
const RUNNER_START_ATTEMPTS = 5;

const DEFAULT_TIMING: WorkerOptions["timing"] = {
  backoff: { first: 1000, max: 30_000 },
  queuePollMs: 1000,
  cancelPollMs: 200,
  leaseHeartbeatMs: 2000,
};

export function createEngine(config: Config, log: Logger): EngineRouter {
  return new EngineRouter(config.engine, (name) => {
    const engineLog = log.child({ component: "engine", engine: name });
    if (name === "a1111") return new A1111Engine({ baseUrl: config.a1111.baseUrl, auth: config.a1111.auth, timing: { jobBaseMs: config.a1111.jobTimeoutMs } }, engineLog);
    if (name === "comfyui") return new ComfyUIEngine({ baseUrl: config.comfyui.baseUrl, timing: { jobBaseMs: config.comfyui.jobTimeoutMs } }, engineLog);
    if (name === "invokeai") return new InvokeAIEngine({ baseUrl: config.invokeai.baseUrl, timing: { jobBaseMs: config.invokeai.jobTimeoutMs } }, engineLog);
    const { python, packageDir, env, jobDeadline, brokenRetryMs } = config.runner;
    return new DiffusersEngine({ python, packageDir, env, readyTimeoutMs: 300_000, jobDeadline, startAttempts: RUNNER_START_ATTEMPTS, brokenRetryMs }, engineLog);
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
  }, STORAGE_CHECK_DELAY_MS).unref();
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

export function linksFor(config: Config, store: ImageStore, overrides: AppOverrides): ImageLinks {
  return imageLinks(store, config.presignTtlSeconds, overrides.filesBaseUrl ? { baseUrl: overrides.filesBaseUrl, home: config.home } : undefined);
}

/**
 * The composition root: queue → worker → engine → storage → index, wired once here and started. With a database
 * URL the queue and index are on Postgres (pgApp.ts, loaded only then); otherwise the embedded SQLite file.
 */
export async function createApp(config: Config, log: Logger, overrides: AppOverrides = {}): Promise<App> {
  if (config.databaseUrl) return (await import("./postgresApp.js")).createPgApp(config, config.databaseUrl, log, overrides);
  const db = openDatabase(config.databasePath);
  // Heartbeats, progress and notices wait briefly for another process's lock, then skip a beat, rather than stop
  // the whole server for the full busy timeout every two seconds while, say, a backup holds the file.
  const quickDb = openDatabase(config.databasePath, { busyTimeoutMs: QUICK_BUSY_TIMEOUT_MS, migrate: false });
  const jobs = new JobStore(db, quickDb);
  const lease = new WorkerLease(quickDb);
  const index = new ImageIndex(db);
  const store = createStore(config);
  checkStoreSoon(store, log);
  const engine = overrides.engine ?? createEngine(config, log);
  const queue = new JobQueue(sqliteQueueStore(jobs, lease));
  const worker = new Worker({
    jobs,
    lease,
    engine,
    store,
    index,
    ...workerParts(config, log),
    timing: { ...DEFAULT_TIMING, ...overrides.timing },
  });
  if (overrides.runWorker !== false) worker.start();
  return {
    config,
    log,
    db,
    queue,
    index,
    store,
    links: linksFor(config, store, overrides),
    engine,
    worker,
    workers: null,
    databaseTrouble: databaseBusy,
    async close() {
      await worker.stop();
      quickDb.close();
      db.close();
    },
  };
}

/** What tool handlers get, from whichever door calls them. */
export function toolDeps(app: App): ToolDeps {
  return {
    config: app.config,
    queue: app.queue,
    index: app.index,
    store: app.store,
    links: app.links,
    log: app.log,
    workers: app.workers,
    databaseTrouble: app.databaseTrouble,
    async engineModels(name) {
      const engine = app.engine instanceof EngineRouter ? app.engine.engine(name) : null;
      if (!(engine instanceof AppEngine)) return { reachable: false, problem: `no ${name} engine here` };
      try {
        return { reachable: true, models: await engine.models() };
      } catch (error) {
        return { reachable: false, problem: messageOf(error) };
      }
    },
  };
}

/** One MCP server over the app: cheap, so each connection (and each protocol era) may get its own. */
export function createMcpServer(app: App): McpServer {
  const server = new McpServer(
    { name: "kitty-images", version: VERSION },
    {
      instructions:
        "Local Stable Diffusion. generate_image queues a job and returns a jobId at once; job_status with wait_seconds " +
        "waits for it; select_image turns the result into an imageRef {downloadUrl, storageUri} for downstream tools.",
    },
  );
  const deps = toolDeps(app);
  for (const tool of TOOLS) registerTool(server, tool === listModels && app.workers ? listModelsWithWorkers : tool, deps);
  registerGalleryApp(server);
  return server;
}
