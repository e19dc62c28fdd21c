import type { Config } from "../config.js";
import type { KittyError } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import type { EngineName } from "../core/generation.js";
import type { Engine } from "../engines/engine.js";
import type { EngineModels } from "../models/engineCatalog.js";
import type { CatalogWatch } from "../models/catalogWatch.js";
import type { JobQueue } from "../queue/jobQueue.js";
import type { ImageIndex, TaskIndex, WorkerInfo } from "../queue/ports.js";
import type { RunObserver } from "../queue/runJob.js";
import type { ImageLinks } from "../storage/imageLinks.js";
import type { ImageStore } from "../storage/imageStore.js";
import type { ImageInputDeps } from "../uploads/imageInputs.js";

/** What runs jobs in this process, as the doors see it: /healthz asks whether it holds the queue, /metrics listens. */
export interface JobRunner {
  readonly holdsQueue: boolean;
  observe(observer: RunObserver): void;
}

/**
 * The running app as every door sees it (MCP over stdio or HTTP, REST, the gallery, /metrics), whichever database
 * holds the queue. app/ builds it; the doors never reach past it to a database or a worker loop.
 */
export interface App {
  config: Config;
  log: Logger;
  queue: JobQueue;
  index: ImageIndex;
  /** Where image arguments come from (stored images, uploads, data: URLs, local files, listed hosts). */
  imageInputs: ImageInputDeps;
  /** The MCP tasks clients opened (a tools/call run as a task stands for its job). */
  tasks: TaskIndex;
  /** The watch on models.yaml (serving processes): since when its models are served, and why an edit was refused. */
  catalog: CatalogWatch | null;
  store: ImageStore;
  links: ImageLinks;
  engine: Engine;
  /** null: this process runs no jobs (a Postgres front-end, or a CLI that only asks). */
  worker: JobRunner | null;
  /** The GPU workers in the shared registry (Postgres), for list_models and /healthz; null on SQLite. */
  workers: (() => Promise<WorkerInfo[]>) | null;
  /** What an engine that is another app (A1111, ComfyUI, InvokeAI) offers, asked now. */
  engineModels(name: EngineName): Promise<EngineModels>;
  /** A database error a caller can act on (SQLite locked, Postgres restarting) as a typed error; null for any other. */
  databaseTrouble(error: unknown, doing: string): KittyError | null;
  /** Stops the worker (the running job stays queued for the next start), the engine and the database. */
  close(): Promise<void>;
}
