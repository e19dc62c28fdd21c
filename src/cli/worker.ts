import { inspectModelFolder } from "../models/modelFolder.js";
import { messageOf } from "../errors.js";
import { createEngine, createStore } from "../server.js";
import { StagingArea } from "../storage/staging.js";
import { pythonPreviewMaker } from "../storage/previewMaker.js";
import { loadSetup } from "./setup.js";
import { parseCommand, UsageError } from "./usage.js";

/** How often a worker heartbeats, and how long silence means a host is dead (its running job goes to another). */
const HEARTBEAT_MS = 2_000;
const STALE_MS = 15_000;
const BACKOFF = { first: 1_000, max: 30_000 };

/**
 * `kitty-images worker`: a GPU host on the shared Postgres queue (KITTY_IMAGES_DATABASE_URL). It runs the engine,
 * takes one job at a time for the models it has on disk, stores to the shared storage, and has no MCP door.
 */
export async function workerCommand(args: string[]): Promise<void> {
  parseCommand("worker", args, {}, { min: 0, max: 0, name: "" });
  const { config, log } = await loadSetup("server");
  if (!config.databaseUrl) {
    throw new UsageError("kitty-images worker takes jobs from a shared Postgres queue: set KITTY_IMAGES_DATABASE_URL=postgres://… (one machine needs no worker: serve runs its own)");
  }
  // The models this host can run: the ones models.yaml names and it has on disk (or another engine serves).
  const models = config.models.entries.filter((entry) => entry.engine !== "diffusers" || inspectModelFolder(entry.path).present).map((entry) => entry.name);
  const { createPgPool } = await import("../queue/pgPool.js");
  const { migratePostgres, PgJobStore } = await import("../queue/pgJobStore.js");
  const { PgImageIndex } = await import("../storage/pgImageIndex.js");
  const { PgJobListener } = await import("../queue/pgJobListener.js");
  const { PgWorker } = await import("../queue/pgWorker.js");
  const { PgWorkerPresence } = await import("../queue/pgWorkerPresence.js");

  const pool = createPgPool(config.databaseUrl, log);
  await migratePostgres(pool);
  const jobs = new PgJobStore(pool);
  const engine = createEngine(config, log);
  const worker = new PgWorker({
    jobs,
    index: new PgImageIndex(pool),
    engine,
    store: createStore(config),
    staging: new StagingArea(config.stagingDir),
    keyPrefix: config.keyPrefix,
    previewMaker: pythonPreviewMaker(config.runner.python, config.runner.packageDir, log.child({ component: "previews" })),
    log: log.child({ component: "worker" }),
    workerId: config.workerId,
    models,
    timing: { backoff: BACKOFF, queuePollMs: 5_000, cancelPollMs: 1_000 },
  });
  const listener = new PgJobListener(config.databaseUrl, { onEvent: (name, jobId) => worker.heard(name, jobId), onReconnect: () => worker.channelBack() }, BACKOFF, log);
  const presence = new PgWorkerPresence(jobs, { id: config.workerId, host: config.workerId, models, device: null }, { heartbeatMs: HEARTBEAT_MS, staleMs: STALE_MS }, log);
  await presence.start();
  await listener.start();
  worker.start();
  engine.start().catch((error: Error) => log.warn({ error: error.message }, "engine did not start yet; jobs will wait and retry"));
  log.info({ workerId: config.workerId, models }, "kitty-images worker taking jobs from Postgres");

  let closing = false;
  const shutdown = async (reason: string) => {
    if (closing) return;
    closing = true;
    log.info({ reason }, "worker shutting down");
    try {
      await worker.stop();
      await presence.stop();
      await listener.stop();
      await pool.end();
    } catch (error) {
      log.error({ error: messageOf(error) }, "error while shutting down");
    }
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}
