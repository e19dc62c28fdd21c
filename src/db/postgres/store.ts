import type pg from "pg";
import { messageOf } from "../../core/errors.js";
import type { Logger } from "../../core/log.js";
import type { DatabaseFacts } from "../../queue/ports.js";
import { PgImageIndex } from "./images.js";
import { PgJobStore } from "./jobs.js";
import { migratePostgres, PG_MIGRATIONS } from "./migrations.js";
import { createPgPool } from "./pool.js";
import { PgWorkerRegistry } from "./registry.js";
import { PgTaskIndex } from "./tasks.js";
import { PgUploadIndex } from "./uploads.js";

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

/** The queue a studio's hosts share: jobs, images and the worker registry in one Postgres database. */
export interface PostgresQueue {
  jobs: PgJobStore;
  images: PgImageIndex;
  uploads: PgUploadIndex;
  tasks: PgTaskIndex;
  registry: PgWorkerRegistry;
  pool: pg.Pool;
}

/** Opens the pool and brings the schema up to this release's (any process may be first: migrations lock). */
export async function openPostgresQueue(url: string, log: Logger): Promise<PostgresQueue> {
  const pool = createPgPool(url, log);
  try {
    await migratePostgres(pool);
  } catch (error) {
    await pool.end().catch(() => undefined);
    throw new Error(`cannot use the Postgres queue at ${redactedUrl(url)} (KITTY_IMAGES_DATABASE_URL): ${messageOf(error)}`);
  }
  const images = new PgImageIndex(pool);
  return { jobs: new PgJobStore(pool, images), images, uploads: new PgUploadIndex(pool), tasks: new PgTaskIndex(pool), registry: new PgWorkerRegistry(pool), pool };
}

/**
 * What `doctor` reports of the shared database, without changing it: a doctor does not migrate. Rejects, naming
 * the URL without its password, when Postgres does not answer.
 */
export async function describePostgres(url: string, staleMs: number, log: Logger): Promise<DatabaseFacts> {
  const pool = createPgPool(url, log, 1);
  try {
    const version = (await pool.query<{ server_version: string }>("SHOW server_version")).rows[0]!.server_version;
    const facts: DatabaseFacts = {
      location: `Postgres ${version} at ${redactedUrl(url)}`,
      schema: "none",
      schemaVersion: 0,
      schemaKnown: PG_MIGRATIONS.length,
      counts: null,
      images: null,
      queueHolderPid: null,
      workers: null,
    };
    if ((await pool.query<{ jobs: string | null }>(`SELECT to_regclass('jobs') AS jobs`)).rows[0]!.jobs === null) return { ...facts, workers: [] };
    facts.schemaVersion = Number((await pool.query(`SELECT version FROM kitty_schema`)).rows[0]?.version ?? 0);
    if (facts.schemaVersion < PG_MIGRATIONS.length) return { ...facts, schema: "older" };
    const images = new PgImageIndex(pool);
    return {
      ...facts,
      schema: "current",
      counts: await new PgJobStore(pool, images).countByState(),
      images: await images.count(),
      workers: await new PgWorkerRegistry(pool).workers(staleMs),
    };
  } catch (error) {
    throw new Error(`cannot reach Postgres at ${redactedUrl(url)} (KITTY_IMAGES_DATABASE_URL): ${messageOf(error)}`);
  } finally {
    await pool.end().catch(() => undefined);
  }
}
