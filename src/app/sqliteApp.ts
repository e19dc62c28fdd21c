import type { Config } from "../config.js";
import { CatalogWatch } from "../models/catalogWatch.js";
import type { Logger } from "../core/log.js";
import { databaseBusy } from "../db/sqlite/errors.js";
import { openSqliteQueue } from "../db/sqlite/store.js";
import type { Engine } from "../engines/engine.js";
import type { App } from "../mcp/app.js";
import { JobQueue } from "../queue/jobQueue.js";
import { LeasedJobSource } from "../queue/jobSources.js";
import { Worker } from "../queue/worker.js";
import { checkStoreSoon, createStore, engineModelsOf, imageInputsFor, linksFor, workerParts } from "./parts.js";
import { TIMING, type SqliteTiming } from "./timing.js";

/**
 * One machine: queue and index in this data dir's SQLite file, which every server process on it opens (Claude
 * Desktop and the KITTY agent each start their own). Each runs a worker; the one holding the lease runs the jobs.
 */
export function createSqliteApp(
  config: Config,
  log: Logger,
  { runsJobs, engine, filesBaseUrl, watchModels, timing: given }: { runsJobs: boolean; engine: Engine; filesBaseUrl?: string; watchModels?: boolean; timing?: Partial<SqliteTiming> },
): App {
  const timing = { ...TIMING.sqlite, ...given };
  const { jobs, images, uploads, tasks, lease, close } = openSqliteQueue(config.databasePath);
  const store = createStore(config);
  checkStoreSoon(store, log);
  const worker = runsJobs
    ? new Worker({ jobs, source: new LeasedJobSource(jobs, lease, timing, log.child({ component: "worker" })), heard: jobs.events, engine, store, ...workerParts(config, log), timing })
    : null;
  // Starting a leased worker only records its hooks; the lease is tried in its loop.
  void worker?.start();
  // Every part reads config.models when it needs it, so an adopted edit needs nothing else here.
  const catalog = watchModels ? new CatalogWatch(config.models, config.readModels, log.child({ component: "models" })) : null;
  catalog?.start();
  return {
    config,
    log,
    queue: new JobQueue(jobs, { events: jobs.events, pollMs: timing.waitPollMs, waitingReason: async () => (await lease.holder())?.notice ?? null }),
    index: images,
    imageInputs: imageInputsFor(config, store, images, uploads, log),
    tasks,
    catalog,
    store,
    links: linksFor(config, store, filesBaseUrl),
    engine,
    engineModels: engineModelsOf(engine),
    worker,
    workers: null,
    databaseTrouble: databaseBusy,
    async close() {
      catalog?.stop();
      if (worker) await worker.stop();
      else await engine.stop();
      close();
    },
  };
}
