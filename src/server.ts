import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import path from "node:path";
import type { Config } from "./config.js";
import { openDatabase, type Db } from "./db.js";
import { DiffusersEngine } from "./engines/diffusers.js";
import type { Engine } from "./engines/engine.js";
import { KittyError } from "./errors.js";
import type { Logger } from "./log.js";
import { JobStore } from "./queue/jobStore.js";
import { Worker } from "./queue/worker.js";
import { WorkerLease } from "./queue/workerLease.js";
import { ImageIndex } from "./storage/imageIndex.js";
import type { ImageStore } from "./storage/imageStore.js";
import { LocalImageStore } from "./storage/local.js";
import { S3ImageStore } from "./storage/s3.js";
import { cancelJob } from "./tools/cancelJob.js";
import { generateImage } from "./tools/generateImage.js";
import { jobStatus } from "./tools/jobStatus.js";
import { listLatestImages } from "./tools/listLatestImages.js";
import { listModels } from "./tools/listModels.js";
import { selectImage } from "./tools/selectImage.js";
import { registerTool, type ToolDeps } from "./tools/toolKit.js";

const VERSION = "0.1.0";

export interface App {
  server: McpServer;
  engine: Engine;
  worker: Worker;
  db: Db;
  /** Stops the worker (the running job stays queued for the next start), the engine and the database. */
  close(): Promise<void>;
}

export function createEngine(config: Config, log: Logger): Engine {
  if (config.engine !== "diffusers") {
    throw new KittyError("config_invalid", `IMAGE_ENGINE=${config.engine} is not available yet; this version runs IMAGE_ENGINE=diffusers`);
  }
  return new DiffusersEngine(
    { python: config.runner.python, packageDir: config.runner.packageDir, env: config.runner.env, readyTimeoutMs: 300_000 },
    log.child({ component: "engine" }),
  );
}

export function createStore(config: Config): ImageStore {
  return config.storage.kind === "s3" ? new S3ImageStore(config.storage.s3) : new LocalImageStore(path.join(config.home, "files"));
}

/** The composition root: tool handler → queue → worker → engine → storage → index, wired once here. */
export async function createApp(config: Config, log: Logger): Promise<App> {
  const db = openDatabase(config.databasePath);
  const jobs = new JobStore(db);
  const index = new ImageIndex(db);
  const store = createStore(config);
  // Storage down at start (MinIO still booting at login) must not keep the tools away: uploads wait and retry.
  await store.ensureReady().catch((error: Error) => log.warn({ error: error.message }, "storage is not reachable yet; uploads will retry"));
  const engine = createEngine(config, log);
  const worker = new Worker(
    db,
    jobs,
    engine,
    store,
    index,
    new WorkerLease(db),
    {
      stagingDir: config.stagingDir,
      keyPrefix: config.keyPrefix,
      engineName: engine.name,
      retryDelayMs: { first: 1000, max: 30_000 },
      queuePollMs: 1000,
      cancelPollMs: 200,
      leaseHeartbeatMs: 2000,
    },
    log.child({ component: "worker" }),
  );

  const server = new McpServer(
    { name: "kitty-images", version: VERSION },
    {
      instructions:
        "Local Stable Diffusion. generate_image queues a job and returns a jobId at once; job_status with wait_seconds " +
        "waits for it; select_image turns the result into an imageRef {downloadUrl, storageUri} for downstream tools.",
    },
  );
  const deps: ToolDeps = { config, jobs, worker, index, store, log };
  for (const tool of [generateImage, jobStatus, listLatestImages, selectImage, cancelJob, listModels]) {
    registerTool(server, tool as Parameters<typeof registerTool>[1], deps);
  }

  worker.start();

  return {
    server,
    engine,
    worker,
    db,
    async close() {
      await worker.stop();
      await server.close();
      db.close();
    },
  };
}
