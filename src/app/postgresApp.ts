import type { Config } from "../config.js";
import { CatalogWatch } from "../models/catalogWatch.js";
import { messageOf } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { postgresUnavailable } from "../db/postgres/errors.js";
import { PgJobListener } from "../db/postgres/listener.js";
import { openPostgresQueue, redactedUrl } from "../db/postgres/store.js";
import type { Engine } from "../engines/engine.js";
import type { App } from "../mcp/app.js";
import { localizeRequest } from "../models/localizeRequest.js";
import { inspectEntry, inspectModelFolder } from "../models/modelFolder.js";
import { familyOf, familyOfElsewhere } from "../models/familyRules.js";
import { JobEvents } from "../queue/jobEvents.js";
import { JobQueue } from "../queue/jobQueue.js";
import { SharedJobSource } from "../queue/jobSources.js";
import type { AdvertisedLora, AdvertisedModel } from "../queue/ports.js";
import { Worker } from "../queue/worker.js";
import { sharedWaitingReason, WorkerPresence } from "../queue/workerPresence.js";
import { checkStoreSoon, createStore, engineModelsOf, imageInputsFor, linksFor, workerParts } from "./parts.js";
import { TIMING } from "./timing.js";

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
 * jobs channel (waiters wake on it). With `runsJobs` this process is also a GPU worker: it registers its models
 * (those models.yaml names that it has on disk, or that another engine serves), heartbeats, and takes their jobs.
 */
export async function createPostgresApp(config: Config, url: string, log: Logger, { runsJobs, engine, filesBaseUrl, watchModels }: { runsJobs: boolean; engine: Engine; filesBaseUrl?: string; watchModels?: boolean }): Promise<App> {
  const timing = TIMING.postgres;
  const { jobs, images, uploads, tasks, registry, pool } = await openPostgresQueue(url, log);
  const store = createStore(config);
  checkStoreSoon(store, log);
  // Changes from every host, this one's included (its own NOTIFYs come back too, so each is heard once): front-end
  // waiters wake on them, the worker takes and cancels.
  const heard = new JobEvents();
  let worker: Worker | null = null;
  let advertised: readonly string[] = [];
  let advertise: () => Promise<void> = async () => undefined;
  if (runsJobs) {
    const { models, modelInfo, loras } = modelsOnThisHost(config);
    advertised = models;
    const presence = new WorkerPresence(
      jobs,
      registry,
      { id: config.workerId, host: config.workerId, models, modelInfo, loras, device: () => engine.health().device ?? null },
      timing,
      log,
    );
    const source = new SharedJobSource(jobs, registry, presence, {
      workerId: config.workerId,
      models,
      can: { refiners: models.filter((model) => modelInfo[model]!.refiner), loras: loras.map((lora) => lora.name) },
      localize: (request) => localizeRequest(request, config.models, config.workerId),
      queuePollMs: timing.queuePollMs,
    });
    worker = new Worker({ jobs, source, heard, engine, store, ...workerParts(config, log), timing });
    // After a models.yaml or LoRA folder change: jobs are taken, and front-ends route, by what is here now.
    advertise = async () => {
      const now = modelsOnThisHost(config);
      source.offer({ models: now.models, can: { refiners: now.models.filter((model) => now.modelInfo[model]!.refiner), loras: now.loras.map((lora) => lora.name) } });
      await presence.advertise(now);
      log.info({ workerId: config.workerId, models: now.models, loras: now.loras.length }, "this worker advertises its models again");
    };
  }
  const catalog = watchModels ? new CatalogWatch(config.models, config.readModels, log.child({ component: "models" }), () => advertise()) : null;
  const listener = new PgJobListener(url, { onEvent: (name, jobId) => heard.emit(name, jobId), onReconnect: () => worker?.channelBack() }, timing.backoff, log);
  // Each part is stopped however the others fared, so a failed start or a stop that throws leaves nothing running.
  // The worker first: its running job goes back to the queue while the database still answers.
  const stopAll = async () => {
    const failures = [];
    for (const stop of [() => catalog?.stop(), () => worker?.stop(), () => listener.stop(), () => (worker ? undefined : engine.stop()), () => pool.end()]) {
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
    if (worker) {
      await worker.start();
      log.info({ workerId: config.workerId, models: advertised }, "this process is a worker on the Postgres queue");
    }
    catalog?.start();
  } catch (error) {
    await stopAll().catch(() => undefined);
    throw new Error(`could not start on the Postgres queue at ${redactedUrl(url)}: ${messageOf(error)}`);
  }

  return {
    config,
    log,
    queue: new JobQueue(jobs, { events: heard, pollMs: timing.waitPollMs, waitingReason: (job) => sharedWaitingReason(registry, timing.staleMs, job) }),
    index: images,
    imageInputs: imageInputsFor(config, store, images, uploads, log),
    tasks,
    catalog,
    store,
    links: linksFor(config, store, filesBaseUrl),
    engine,
    engineModels: engineModelsOf(engine),
    worker,
    workers: () => registry.workers(timing.staleMs),
    databaseTrouble: postgresUnavailable,
    close: stopAll,
  };
}
