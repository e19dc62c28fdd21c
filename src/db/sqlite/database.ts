import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { MIGRATIONS } from "./migrations.js";

export type Db = Database.Database;

/** How long a statement waits for another process's write lock before SQLite gives up with SQLITE_BUSY. */
export const BUSY_TIMEOUT_MS = 10_000;

/**
 * `busyTimeoutMs`: how long a statement waits for another process's lock. better-sqlite3 waits synchronously, so
 * the whole server stands still meanwhile: writes that may be skipped (heartbeats, progress, notices) get their own
 * connection with a short wait. `migrate: false` for a second connection to a file the first has just migrated.
 */
export function openDatabase(file: string, { busyTimeoutMs = BUSY_TIMEOUT_MS, migrate: applyMigrations = true }: { busyTimeoutMs?: number; migrate?: boolean } = {}): Db {
  if (file !== ":memory:") mkdirSync(path.dirname(file), { recursive: true });
  const db = new Database(file);
  // First, so that servers starting together on a new data dir wait for each other instead of failing.
  db.pragma(`busy_timeout = ${busyTimeoutMs}`);
  db.pragma("journal_mode = WAL");
  db.pragma("synchronous = NORMAL");
  db.pragma("foreign_keys = ON");
  if (applyMigrations) migrate(db);
  return db;
}

function migrate(db: Db): void {
  for (;;) {
    // IMMEDIATE takes the write lock before reading user_version, so two processes never apply the same step.
    const applied = db
      .transaction(() => {
        const version = db.pragma("user_version", { simple: true }) as number;
        if (version >= MIGRATIONS.length) return false;
        db.exec(MIGRATIONS[version]!);
        db.pragma(`user_version = ${version + 1}`);
        return true;
      })
      .immediate();
    if (!applied) return;
  }
}
