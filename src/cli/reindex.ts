import { openDatabase } from "../db/sqlite/database.js";
import { JobStore } from "../db/sqlite/jobs.js";
import type { Config } from "../config.js";
import type { Logger } from "../core/log.js";
import { pgRecovered, reindex, sqliteRecovered, type RecoveredImages } from "../queue/reindex.js";
import { createStore } from "../app/createApp.js";
import { ImageIndex } from "../db/sqlite/images.js";
import { printJson } from "./output.js";
import { loadSetup } from "./setup.js";
import { parseCommand } from "./usage.js";

/**
 * `kitty-images reindex`: rebuilds the image index from storage (S3 or the local folder), e.g. after the SQLite
 * file was lost. Prints what it found; exit code 1 when some image could not be read (the log names it).
 */
export async function reindexCommand(args: string[]): Promise<void> {
  parseCommand("reindex", args, {}, { min: 0, max: 0, name: "" });
  const { config, log } = await loadSetup("person");
  const { images, close } = await openIndex(config, log);
  try {
    const store = createStore(config);
    await store.ensureReady();
    const summary = await reindex({ images, store, keyPrefix: config.keyPrefix, log });
    printJson(summary);
    if (summary.unreadable > 0) process.exitCode = 1;
  } finally {
    await close();
  }
}

/** The index reindex fills: the shared Postgres one on a scale-out queue, else this data dir's SQLite file. */
async function openIndex(config: Config, log: Logger): Promise<{ images: RecoveredImages; close(): Promise<void> }> {
  if (config.databaseUrl) {
    const { createPgPool } = await import("../db/postgres/pool.js");
    const { migratePostgres, PgJobStore } = await import("../db/postgres/jobs.js");
    const { PgImageIndex } = await import("../db/postgres/images.js");
    const pool = createPgPool(config.databaseUrl, log, 2);
    await migratePostgres(pool);
    return { images: pgRecovered(new PgJobStore(pool), new PgImageIndex(pool)), close: () => pool.end() };
  }
  const db = openDatabase(config.databasePath);
  return { images: sqliteRecovered(db, new JobStore(db), new ImageIndex(db)), close: async () => void db.close() };
}
