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
  `
  -- Images a user brought (a pasted data: URL, a local file, a fetched URL), stored under their own key prefix and
  -- listed apart from generations. Content-addressed keys: the same bytes brought twice are one upload.
  CREATE TABLE uploads (
    key        TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    width      INTEGER NOT NULL,
    height     INTEGER NOT NULL,
    metadata   TEXT NOT NULL                          -- the JSON sidecar, as stored
  );
  CREATE INDEX uploads_newest ON uploads (created_at DESC, key DESC);
  `,
  `
  -- MCP tasks: a tools/call run as a task stands for its job (task_id is the job's id). expires_at is created_at plus
  -- the task's ttl, in the same ISO form, so expiry is a string comparison. Forgetting a task never touches its job.
  CREATE TABLE tasks (
    task_id    TEXT PRIMARY KEY,
    tool       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    ttl_ms     INTEGER NOT NULL,
    expires_at TEXT NOT NULL,
    cancelled  INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX tasks_newest ON tasks (created_at DESC, task_id DESC);
  CREATE INDEX tasks_expiry ON tasks (expires_at);
  `,
];
