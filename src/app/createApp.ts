// The composition root: the one place that picks the database (the only reader of KITTY_IMAGES_DATABASE_URL's
// value besides config.ts) and wires queue → worker → engine → storage → index for whichever door runs.
import type { Config } from "../config.js";
import type { Logger } from "../core/log.js";
import type { Engine } from "../engines/engine.js";
import type { App } from "../mcp/app.js";
import type { DatabaseFacts, ImageIndex, JobStore, UploadIndex } from "../queue/ports.js";
import { createEngine } from "./parts.js";
import { createSqliteApp } from "./sqliteApp.js";
import { TIMING, type SqliteTiming } from "./timing.js";

export interface AppOverrides {
  /**
   * Whether this process runs jobs. Default: on SQLite yes (every server process competes for the lease, and the
   * holder runs them); on Postgres no (front-ends only queue, report and list; `serve --worker` and
   * `kitty-images worker` pass true). A CLI that only asks passes false.
   */
  runsJobs?: boolean;
  /** Set by the HTTP door: local images get signed links to its /files route instead of file:// URLs. */
  filesBaseUrl?: string;
  /** Fast tests run the real queue, worker and storage around a stand-in engine. */
  engine?: Engine;
  timing?: Partial<SqliteTiming>;
  /** Serving processes watch models.yaml and the LoRA folder and take a valid edit without a restart. */
  watchModels?: boolean;
}

/** True when the queue is a studio's shared Postgres database rather than this data dir's SQLite file. */
export function queueIsShared(config: Config): boolean {
  return config.databaseUrl !== null;
}

export async function createApp(config: Config, log: Logger, overrides: AppOverrides = {}): Promise<App> {
  const shared = queueIsShared(config);
  const options = { runsJobs: overrides.runsJobs ?? !shared, engine: overrides.engine ?? createEngine(config, log), filesBaseUrl: overrides.filesBaseUrl, watchModels: overrides.watchModels };
  // Postgres and its pool load only when the queue is there: a one-machine start never pays for them.
  if (config.databaseUrl) return (await import("./postgresApp.js")).createPostgresApp(config, config.databaseUrl, log, options);
  return createSqliteApp(config, log, { ...options, timing: overrides.timing });
}

/** The queue's database for a maintenance command (reindex): its jobs and images, nothing running. */
export async function openQueueDatabase(config: Config, log: Logger): Promise<{ jobs: JobStore; images: ImageIndex; uploads: UploadIndex; close(): Promise<void> }> {
  if (config.databaseUrl) {
    const { openPostgresQueue } = await import("../db/postgres/store.js");
    const { jobs, images, uploads, pool } = await openPostgresQueue(config.databaseUrl, log);
    return { jobs, images, uploads, close: () => pool.end() };
  }
  const { openSqliteQueue } = await import("../db/sqlite/store.js");
  const { jobs, images, uploads, close } = openSqliteQueue(config.databasePath);
  return { jobs, images, uploads, close: async () => close() };
}

/** What `doctor` reports of the queue's database, without changing a shared one. */
export async function describeQueueDatabase(config: Config, log: Logger): Promise<DatabaseFacts> {
  if (config.databaseUrl) return (await import("../db/postgres/store.js")).describePostgres(config.databaseUrl, TIMING.postgres.staleMs, log);
  return (await import("../db/sqlite/store.js")).describeSqlite(config.databasePath);
}
