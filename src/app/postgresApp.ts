import type { Config } from "../config.js";
import { messageOf } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { localizeRequest } from "../models/localizeRequest.js";
import { familyOf, familyOfElsewhere } from "../models/resolveRequest.js";
import { inspectEntry, inspectModelFolder } from "../models/modelFolder.js";
import { JobEvents } from "../queue/jobEvents.js";
import { JobQueue } from "../queue/jobQueue.js";
import { postgresUnavailable } from "../db/postgres/errors.js";
import { PgJobListener } from "../db/postgres/listener.js";
import { migratePostgres, PgJobStore, type AdvertisedLora, type AdvertisedModel } from "../db/postgres/jobs.js";
import { createPgPool } from "../db/postgres/pool.js";
import { PgWorker } from "../queue/pgWorker.js";
import { PgWorkerPresence } from "../queue/workerPresence.js";
import { pgQueueStore } from "../queue/queueStore.js";
import { checkStoreSoon, createEngine, createStore, linksFor, workerParts, type App, type AppOverrides } from "./createApp.js";
import { PgImageIndex } from "../db/postgres/images.js";

/** How often a worker heartbeats, and how long silence means a host is dead (its running job goes to another). */
export const HEARTBEAT_MS = 2_000;
export const STALE_MS = 15_000;
const BACKOFF = { first: 1_000, max: 30_000 };

/** The URL as logs and errors may show it: the password never leaves the process. */
export function redactedUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(not a URL)";
  }
}

/**
 * The models this host can run (the ones models.yaml names that it has on disk, or that another engine serves), and
 * what front-ends need to know of each: its family and whether its refiner is here.
 */
function modelsOnThisHost(config: Config): { models: string[]; modelInfo: Record<string, AdvertisedModel>; loras: AdvertisedLora[] } {
  const modelInfo: Record<string, AdvertisedModel> = {};
  for (const entry of config.models.entries) {
    if (entry.engine !== "diffusers") {
      modelInfo[entry.name] = { engine: entry.engine, family: familyOfElsewhere(entry), refiner: false };
      continue;
    }
    const onDisk = inspectEntry(entry);
    if (!onDisk.present) continue;
    modelInfo[entry.name] = { engine: entry.engine, family: familyOf(entry, onDisk), refiner: entry.refinerPath !== null && inspectModelFolder(entry.refinerPath).present };
  }
  const loras = config.models.loras().filter((lora) => !lora.problem).map(({ name, family }) => ({ name, family }));
  return { models: Object.keys(modelInfo), modelInfo, loras };
}

/**
 * The scale-out composition: queue and index on Postgres, images in the shared storage. Every process hears the
 * jobs channel (waiters wake on it). With `runWorker` this process is also a GPU worker: it registers its models
 * (those models.yaml names that it has on disk, or that another engine serves), heartbeats, and takes their jobs.
 */
export async function createPgApp(config: Config, url: string, log: Logger, overrides: AppOverrides): Promise<App> {
  const pool = createPgPool(url, log);
  try {
    await migratePostgres(pool);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw new Error(`cannot use the Postgres queue at ${redactedUrl(url)} (KITTY_IMAGES_DATABASE_URL): ${messageOf(error)}`);
  }
  const jobs = new PgJobStore(pool);
  const index = new PgImageIndex(pool);
  const store = createStore(config);
  checkStoreSoon(store, log);
  const engine = overrides.engine ?? createEngine(config, log);

  let worker: PgWorker | null = null;
  let presence: PgWorkerPresence | null = null;
  if (overrides.runWorker === true) {
    const { models, modelInfo, loras } = modelsOnThisHost(config);
    worker = new PgWorker({
      jobs,
      index,
      engine,
      store,
      ...workerParts(config, log),
      workerId: config.workerId,
      models,
      can: { refiners: models.filter((model) => modelInfo[model]!.refiner), loras: loras.map((lora) => lora.name) },
      localize: (request) => localizeRequest(request, config.models, config.workerId),
      timing: { backoff: BACKOFF, queuePollMs: 5_000, cancelPollMs: 1_000 },
    });
    presence = new PgWorkerPresence(jobs, { id: config.workerId, host: config.workerId, models, modelInfo, loras, device: () => engine.health().device ?? null }, { heartbeatMs: HEARTBEAT_MS, staleMs: STALE_MS }, log);
  }
  // Changes from every host, this one's included (its own NOTIFYs come back too, so each is heard once): front-end
  // waiters wake on them, the worker takes and cancels.
  const heard = new JobEvents();
  const listener = new PgJobListener(
    url,
    {
      onEvent: (name, jobId) => {
        heard.emit(name, jobId);
        worker?.heard(name, jobId);
      },
      onReconnect: () => worker?.channelBack(),
    },
    BACKOFF,
    log,
  );
  // Each part is stopped however the others fared, so a failed start or a stop that throws leaves nothing running.
  const stopAll = async () => {
    const failures = [];
    for (const stop of [() => worker?.stop(), () => presence?.stop(), () => listener.stop(), () => (worker ? undefined : engine.stop()), () => pool.end()]) {
      try {
        await stop();
      } catch (error) {
        failures.push(messageOf(error));
      }
    }
    if (failures.length) throw new Error(`could not stop cleanly: ${failures.join("; ")}`);
  };
  try {
    await listener.start();
    if (worker && presence) {
      await presence.start();
      worker.start();
      engine.start().catch((error: Error) => log.warn({ error: error.message }, "engine did not start yet; jobs will wait and retry"));
      log.info({ workerId: config.workerId, models: presence.models }, "this process is a worker on the Postgres queue");
    }
  } catch (error) {
    await stopAll().catch(() => undefined);
    throw new Error(`could not start on the Postgres queue at ${redactedUrl(url)}: ${messageOf(error)}`);
  }

  return {
    config,
    log,
    db: null,
    queue: new JobQueue(pgQueueStore(jobs, STALE_MS, heard)),
    index,
    store,
    links: linksFor(config, store, overrides),
    engine,
    worker,
    workers: () => jobs.workers(STALE_MS),
    databaseTrouble: postgresUnavailable,
    // The worker first: its running job goes back to the queue while the database still answers.
    close: stopAll,
  };
}
