import type pg from "pg";
import { inTransaction } from "./pool.js";

/** Numbered migrations, applied in order; kitty_schema records how far a database has come. */
export const PG_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE jobs (
    seq              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- FIFO order
    id               text NOT NULL UNIQUE,
    state            text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    request          jsonb NOT NULL,
    model            text NOT NULL,                                     -- routing: only a worker with it takes the job
    attempts         integer NOT NULL DEFAULT 0,
    worker_id        text,                                              -- the worker whose run holds it now
    image_key        text,
    progress_step    integer,
    progress_total   integer,
    cancel_requested boolean NOT NULL DEFAULT false,
    error_code       text,
    error_message    text,
    created_at       text NOT NULL,
    started_at       text,
    finished_at      text
  );
  CREATE INDEX jobs_by_state ON jobs (state, seq);

  -- Each GPU worker registers here and heartbeats; a running job whose worker went silent is recovered.
  CREATE TABLE workers (
    id           text PRIMARY KEY,
    host         text NOT NULL,
    models       text[] NOT NULL,
    device       text,
    heartbeat_at timestamptz NOT NULL
  );

  -- Byte order ("C") for keys and times, whatever the database's locale: keyset paging compares them as tuples.
  CREATE TABLE images (
    key        text COLLATE "C" PRIMARY KEY,
    job_id     text NOT NULL REFERENCES jobs (id),
    created_at text COLLATE "C" NOT NULL,
    prompt     text NOT NULL,
    model      text NOT NULL,
    width      integer NOT NULL,
    height     integer NOT NULL,
    seed       bigint NOT NULL,
    metadata   jsonb NOT NULL
  );
  CREATE INDEX images_newest ON images (created_at DESC, key DESC);
  CREATE INDEX images_by_job ON images (job_id, created_at);
  `,
  `
  -- What each worker knows of its models (family, refiner on disk), so front-ends need no model folders of their own.
  ALTER TABLE workers ADD COLUMN model_info jsonb NOT NULL DEFAULT '{}'::jsonb;
  -- Why the worker's job waits (storage down, the engine not starting), for job_status on every front-end.
  ALTER TABLE workers ADD COLUMN notice text;
  -- The LoRAs in its folder ([{name, family}]): a job naming LoRAs goes only to a worker that has them all.
  ALTER TABLE workers ADD COLUMN loras jsonb NOT NULL DEFAULT '[]'::jsonb;
  `,
  `
  -- Images a user brought, listed apart from generations (db/sqlite/migrations.ts says more).
  CREATE TABLE uploads (
    key        text COLLATE "C" PRIMARY KEY,
    created_at text COLLATE "C" NOT NULL,
    width      integer NOT NULL,
    height     integer NOT NULL,
    metadata   jsonb NOT NULL
  );
  CREATE INDEX uploads_newest ON uploads (created_at DESC, key DESC);
  `,
  `
  -- MCP tasks, seen by every front-end (db/sqlite/migrations.ts says more).
  CREATE TABLE tasks (
    task_id    text COLLATE "C" PRIMARY KEY,
    tool       text NOT NULL,
    created_at text COLLATE "C" NOT NULL,
    ttl_ms     bigint NOT NULL,
    expires_at text COLLATE "C" NOT NULL,
    cancelled  boolean NOT NULL DEFAULT false
  );
  CREATE INDEX tasks_newest ON tasks (created_at DESC, task_id DESC);
  CREATE INDEX tasks_expiry ON tasks (expires_at);
  `,
];

/** Any process may start first: an advisory lock makes concurrent starts apply each migration exactly once. */
export async function migratePostgres(pool: pg.Pool): Promise<void> {
  await inTransaction(pool, async (client) => {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('kitty-images migrations'))`);
    await client.query(`CREATE TABLE IF NOT EXISTS kitty_schema (version integer NOT NULL)`);
    const { rows } = await client.query<{ version: number }>(`SELECT version FROM kitty_schema`);
    let version = rows[0]?.version ?? 0;
    if (rows.length === 0) await client.query(`INSERT INTO kitty_schema (version) VALUES (0)`);
    for (; version < PG_MIGRATIONS.length; version++) await client.query(PG_MIGRATIONS[version]!);
    await client.query(`UPDATE kitty_schema SET version = $1`, [version]);
  });
}
