import Database from "better-sqlite3";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { KittyError } from "../../core/errors.js";

export type Db = Database.Database;

/** Numbered migrations, applied in order at start; user_version records how far a file has come. */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE jobs (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,  -- FIFO order
    id            TEXT NOT NULL UNIQUE,
    state         TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    request       TEXT NOT NULL,                      -- JSON GenerationRequest, model path resolved at enqueue
    attempts      INTEGER NOT NULL DEFAULT 0,         -- times taken to running
    image_key     TEXT,                               -- fixed on first run so a retry overwrites, never duplicates
    error_code    TEXT,
    error_message TEXT,
    created_at    TEXT NOT NULL,
    started_at    TEXT,
    finished_at   TEXT
  );
  CREATE INDEX jobs_by_state ON jobs (state, seq);

  CREATE TABLE images (
    key        TEXT PRIMARY KEY,
    job_id     TEXT NOT NULL UNIQUE REFERENCES jobs (id),
    created_at TEXT NOT NULL,
    prompt     TEXT NOT NULL,
    model      TEXT NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    seed       INTEGER NOT NULL,
    metadata   TEXT NOT NULL                          -- the JSON sidecar, as stored
  );
  -- newest first in O(limit): list_latest_images walks this index and stops
  CREATE INDEX images_newest ON images (created_at DESC, key DESC);
  `,
  `
  -- progress and cancel live in the row so that any server process on this data dir can read and set them
  ALTER TABLE jobs ADD COLUMN progress_step INTEGER;
  ALTER TABLE jobs ADD COLUMN progress_total INTEGER;
  ALTER TABLE jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;

  -- Every MCP client starts its own stdio server; the one holding this row is the only one that runs jobs.
  CREATE TABLE worker_lease (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    owner        TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    host         TEXT NOT NULL,                       -- pid liveness only means something on the same host
    heartbeat_at INTEGER NOT NULL,                    -- epoch ms
    notice       TEXT                                 -- why the queue is waiting, for job_status in any process
  );
  `,
  `
  -- A job may make a batch of images: job_id is no longer unique. SQLite drops a constraint by rebuilding the table.
  CREATE TABLE images_batched (
    key        TEXT PRIMARY KEY,
    job_id     TEXT NOT NULL REFERENCES jobs (id),
    created_at TEXT NOT NULL,
    prompt     TEXT NOT NULL,
    model      TEXT NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    seed       INTEGER NOT NULL,
    metadata   TEXT NOT NULL
  );
  INSERT INTO images_batched SELECT key, job_id, created_at, prompt, model, width, height, seed, metadata FROM images;
  DROP TABLE images;
  ALTER TABLE images_batched RENAME TO images;
  CREATE INDEX images_newest ON images (created_at DESC, key DESC);
  CREATE INDEX images_by_job ON images (job_id, created_at);
  `,
];

/** How long a statement waits for another process's write lock before SQLite gives up with SQLITE_BUSY. */
const BUSY_TIMEOUT_MS = 10_000;

/**
 * SQLite's "locked by another connection", once busy_timeout has run out (a backup tool, a `sqlite3` shell left
 * in a transaction), as an error a person can act on; null for any other error.
 */
export function databaseBusy(error: unknown, doing: string): KittyError | null {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !/^SQLITE_(BUSY|LOCKED)/.test(code)) return null;
  return new KittyError(
    "database_busy",
    `${doing}: another process has held the job database locked for over ${BUSY_TIMEOUT_MS / 1000}s (${code}), so nothing was changed; try again in a moment, and look for a program holding kitty-images.sqlite open in a transaction`,
  );
}

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
