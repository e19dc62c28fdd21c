// The jobs table on Postgres, for several GPU hosts sharing one queue: the same guarded statements as jobStore.ts,
// with rows taken by FOR UPDATE SKIP LOCKED and every change announced on a NOTIFY channel for the other hosts.
import { randomUUID } from "node:crypto";
import pg from "pg";
import type { EngineName, GenerationRequest, ModelFamily } from "../../core/generation.js";
import { JobEvents } from "../../queue/jobEvents.js";
import { fromPostgres } from "./errors.js";
import { canTransition, JOB_STATES, MAX_ATTEMPTS, type JobState } from "../../queue/job.js";
import { JobTakenOver, type Job } from "../sqlite/jobs.js";

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
];

/** The channel every change is announced on: `<event> <jobId>`, for front-ends and workers on other hosts. */
export const JOBS_CHANNEL = "kitty_jobs";

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

async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let failed: unknown;
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    failed = error;
    await client.query("ROLLBACK").catch(() => undefined);
    throw fromPostgres(error);
  } finally {
    // A connection that failed mid-transaction is closed rather than handed to the next caller.
    client.release(failed instanceof Error && !(failed instanceof JobTakenOver) ? failed : undefined);
  }
}

interface PgJobRow {
  seq: number;
  id: string;
  state: JobState;
  request: GenerationRequest;
  attempts: number;
  image_key: string | null;
  progress_step: number | null;
  progress_total: number | null;
  cancel_requested: boolean;
  error_code: string | null;
  error_message: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

function toJob(row: PgJobRow): Job {
  return {
    id: row.id,
    seq: row.seq,
    state: row.state,
    request: row.request,
    attempts: row.attempts,
    imageKey: row.image_key,
    progress: row.progress_step === null || row.progress_total === null ? null : { step: row.progress_step, totalSteps: row.progress_total },
    cancelRequested: row.cancel_requested,
    error: row.error_code ? { code: row.error_code, message: row.error_message ?? "" } : null,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

const now = () => new Date().toISOString();

const JOB_COLUMNS = `seq, id, state, request, attempts, image_key, progress_step, progress_total, cancel_requested,
  error_code, error_message, created_at, started_at, finished_at`;

/** A statement that changed the row also announces it, in the same transaction: no notice for what did not happen. */
const announce = (event: string) => `pg_notify('${JOBS_CHANNEL}', '${event} ' || id)`;

interface FinishOptions {
  error?: { code: string; message: string };
  attempt?: number;
}

/** A GPU worker as it registered: what list_models shows about who serves which model. */
/** What a worker tells front-ends of one model it has: enough to fill a request's defaults and check its refiner. */
export interface AdvertisedModel {
  /** The engine that runs it on that worker (absent in rows written before engines were reported: the runner). */
  engine?: EngineName;
  family: ModelFamily | null;
  refiner: boolean;
}

/** A LoRA in a worker's folder, as front-ends need to know it. */
export interface AdvertisedLora {
  name: string;
  family: ModelFamily | null;
}

/** A worker as it registers itself. */
export interface WorkerRegistration {
  id: string;
  host: string;
  models: readonly string[];
  device: string | null;
  modelInfo?: Readonly<Record<string, AdvertisedModel>>;
  loras?: readonly AdvertisedLora[];
}

/** What a worker can run beyond a model: a refiner pass only where it has the model's refiner, LoRAs it has. */
export interface WorkerCapabilities {
  refiners: readonly string[];
  loras: readonly string[];
}

export interface WorkerInfo {
  id: string;
  host: string;
  models: string[];
  modelInfo: Record<string, AdvertisedModel>;
  loras: AdvertisedLora[];
  device: string | null;
  /** Why the job it runs waits, as the worker said (null: nothing in the way). */
  notice: string | null;
  heartbeatAt: string;
  /** Heartbeat within the staleness window asked for. */
  alive: boolean;
  /** The job it runs now, if any. */
  runningJobId: string | null;
}

/**
 * The durable FIFO on Postgres. The same contract as the SQLite JobStore (one test-suite runs against both), async,
 * for many workers: takeNext hands each job to exactly one of them, only to a worker that has the job's model.
 */
export class PgJobStore {
  readonly events = new JobEvents();

  constructor(private readonly pool: pg.Pool) {}

  async enqueue(request: GenerationRequest): Promise<Job> {
    const { rows } = await this.pool.query<PgJobRow>(
      `INSERT INTO jobs (id, state, request, model, created_at) VALUES ($1, 'queued', $2, $3, $4)
       RETURNING ${JOB_COLUMNS}, ${announce("enqueued")}`,
      [randomUUID(), JSON.stringify(request), request.model.name, now()],
    );
    const job = toJob(rows[0]!);
    this.events.emit("enqueued", job.id);
    return job;
  }

  /**
   * A done job for an image found in storage that the database does not know (reindex), written with `alongside`
   * (its index row) in one transaction. Nothing happens to a job that exists.
   */
  async insertRecovered(jobId: string, request: GenerationRequest, imageKey: string, createdAt: string, alongside: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      await client.query(
        `INSERT INTO jobs (id, state, request, model, attempts, image_key, created_at, finished_at)
         VALUES ($1, 'done', $2, $3, 1, $4, $5, $5) ON CONFLICT (id) DO NOTHING`,
        [jobId, JSON.stringify(request), request.model.name, imageKey, createdAt],
      );
      await alongside(client);
    });
  }

  async get(jobId: string): Promise<Job | undefined> {
    const { rows } = await this.pool.query<PgJobRow>(`SELECT ${JOB_COLUMNS} FROM jobs WHERE id = $1`, [jobId]);
    return rows[0] && toJob(rows[0]);
  }

  async countByState(): Promise<Record<JobState, number>> {
    const counts = Object.fromEntries(JOB_STATES.map((state) => [state, 0])) as Record<JobState, number>;
    const { rows } = await this.pool.query<{ state: JobState; n: number }>(`SELECT state, count(*)::int AS n FROM jobs GROUP BY state`);
    for (const { state, n } of rows) counts[state] = n;
    return counts;
  }

  async active(queuedLimit: number): Promise<Job[]> {
    const { rows } = await this.pool.query<PgJobRow>(
      `(SELECT ${JOB_COLUMNS} FROM jobs WHERE state = 'running' ORDER BY seq)
       UNION ALL (SELECT ${JOB_COLUMNS} FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT $1)`,
      [queuedLimit],
    );
    return rows.map(toJob);
  }

  /** 1 = next to run (over all workers). Only meaningful for a queued job. */
  async position(job: Job): Promise<number> {
    const { rows } = await this.pool.query<{ ahead: number }>(`SELECT count(*)::int AS ahead FROM jobs WHERE state = 'queued' AND seq < $1`, [job.seq]);
    return rows[0]!.ahead + 1;
  }

  /**
   * Takes the oldest queued job this worker can run and marks it running, or returns undefined. SKIP LOCKED lets
   * workers take side by side without waiting on each other's rows; `models` (absent: any) routes by model, and
   * `can` (absent: anything) keeps a refiner pass or LoRAs away from a worker without them.
   */
  async takeNext(workerId?: string, models?: readonly string[], can?: WorkerCapabilities): Promise<Job | undefined> {
    const { rows } = await this.pool.query<PgJobRow>(
      `WITH next AS (
         SELECT id FROM jobs WHERE state = 'queued' AND ($2::text[] IS NULL OR model = ANY($2))
           AND ($4::text[] IS NULL OR request->'model'->>'refinerPath' IS NULL OR model = ANY($4))
           AND ($5::text[] IS NULL OR NOT EXISTS (
             SELECT 1 FROM jsonb_array_elements(COALESCE(request->'loras', '[]'::jsonb)) AS lora WHERE NOT (lora->>'name' = ANY($5))))
         ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
       UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = $3, worker_id = $1
       FROM next WHERE jobs.id = next.id
       RETURNING ${JOB_COLUMNS.split(",").map((column) => `jobs.${column.trim()}`).join(", ")}`,
      [workerId ?? null, models ? [...models] : null, now(), can ? [...can.refiners] : null, can ? [...can.loras] : null],
    );
    return rows[0] && toJob(rows[0]);
  }

  async fixImageKey(jobId: string, proposedKey: string): Promise<string> {
    const { rows } = await this.pool.query<{ image_key: string }>(
      `UPDATE jobs SET image_key = COALESCE(image_key, $1) WHERE id = $2 RETURNING image_key`,
      [proposedKey, jobId],
    );
    return rows[0]!.image_key;
  }

  async finish(jobId: string, from: JobState, to: "done" | "failed" | "cancelled", how: FinishOptions = {}): Promise<boolean> {
    const finished = await this.finishRow(this.pool, jobId, from, to, how);
    if (finished) this.events.emit("ended", jobId);
    return finished;
  }

  /**
   * Marks the running job done and runs `alongside` (indexing its images) in the same transaction. Throws
   * JobTakenOver, with nothing written, when another run holds the job now (a worker declared dead finishing late).
   */
  async complete(jobId: string, attempt: number, alongside: (client: pg.PoolClient) => Promise<void>): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      await alongside(client);
      if (!(await this.finishRow(client, jobId, "running", "done", { attempt }))) throw new JobTakenOver(jobId);
    });
    this.events.emit("ended", jobId);
  }

  private async finishRow(db: pg.Pool | pg.PoolClient, jobId: string, from: JobState, to: "done" | "failed" | "cancelled", { error, attempt }: FinishOptions): Promise<boolean> {
    if (!canTransition(from, to)) throw new Error(`job state machine forbids ${from} -> ${to}`);
    const result = await db.query(
      `UPDATE jobs SET state = $3, error_code = $4, error_message = $5, finished_at = $6
       WHERE id = $1 AND state = $2 AND ($7::int IS NULL OR attempts = $7)
       RETURNING ${announce("ended")}`,
      [jobId, from, to, error?.code ?? null, error?.message ?? null, now(), attempt ?? null],
    );
    return result.rowCount === 1;
  }

  async setProgress(jobId: string, attempt: number, step: number, totalSteps: number): Promise<void> {
    const result = await this.pool.query(
      `UPDATE jobs SET progress_step = $1, progress_total = $2 WHERE id = $3 AND state = 'running' AND attempts = $4
       RETURNING ${announce("progress")}`,
      [step, totalSteps, jobId, attempt],
    );
    if (result.rowCount === 1) this.events.emit("progress", jobId);
  }

  /** Marks a running job for cancellation; the worker running it hears it on the channel, wherever it runs. */
  async requestCancel(jobId: string): Promise<boolean> {
    const result = await this.pool.query(
      `UPDATE jobs SET cancel_requested = true WHERE id = $1 AND state = 'running' RETURNING ${announce("cancelRequested")}`,
      [jobId],
    );
    const marked = result.rowCount === 1;
    if (marked) this.events.emit("cancelRequested", jobId);
    return marked;
  }

  async isCancelRequested(jobId: string): Promise<boolean> {
    const { rows } = await this.pool.query<{ cancel_requested: boolean }>(`SELECT cancel_requested FROM jobs WHERE id = $1`, [jobId]);
    return rows[0]?.cancel_requested === true;
  }

  /** Puts a running job back at its place in line; `countAttempt: false` when nothing ran. */
  async requeue(jobId: string, { countAttempt = true, attempt }: { countAttempt?: boolean; attempt?: number } = {}): Promise<boolean> {
    const result = await this.pool.query(
      `UPDATE jobs SET state = 'queued', started_at = NULL, worker_id = NULL, progress_step = NULL, progress_total = NULL,
         attempts = attempts - $2
       WHERE id = $1 AND state = 'running' AND ($3::int IS NULL OR attempts = $3)
       RETURNING ${announce("enqueued")}`,
      [jobId, countAttempt ? 0 : 1, attempt ?? null],
    );
    return result.rowCount === 1;
  }

  /** A worker announces itself, its models and device (again after a restart: same id, fresh heartbeat). */
  async registerWorker(worker: WorkerRegistration): Promise<void> {
    await this.pool.query(
      // A worker starting again starts with no notice: what its last life waited on is not this one's business.
      `INSERT INTO workers (id, host, models, device, model_info, loras, notice, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, now())
       ON CONFLICT (id) DO UPDATE SET host = $2, models = $3, device = $4, model_info = $5, loras = $6, notice = NULL, heartbeat_at = now()`,
      [worker.id, worker.host, [...worker.models], worker.device, JSON.stringify(worker.modelInfo ?? {}), JSON.stringify(worker.loras ?? [])],
    );
  }

  /**
   * `device`, once known, replaces what was registered. False when the worker is no longer registered (it said
   * goodbye, or was removed): it must register again.
   */
  async heartbeatWorker(workerId: string, device: string | null = null): Promise<boolean> {
    const result = await this.pool.query(`UPDATE workers SET heartbeat_at = now(), device = COALESCE($2, device) WHERE id = $1`, [workerId, device]);
    return result.rowCount === 1;
  }

  /** Why this worker's job waits, or null when nothing is in the way; read by job_status on every front-end. */
  async setWorkerNotice(workerId: string, notice: string | null): Promise<void> {
    await this.pool.query(`UPDATE workers SET notice = $2 WHERE id = $1 AND notice IS DISTINCT FROM $2`, [workerId, notice]);
  }

  /** A clean shutdown: the worker's row goes, so nobody waits for its heartbeat to go stale. */
  async forgetWorker(workerId: string): Promise<void> {
    await this.pool.query(`DELETE FROM workers WHERE id = $1`, [workerId]);
  }

  /** Every registered worker, whether it heartbeat within `staleMs`, and what it runs now. */
  async workers(staleMs: number): Promise<WorkerInfo[]> {
    const { rows } = await this.pool.query<{
      id: string;
      host: string;
      models: string[];
      model_info: Record<string, AdvertisedModel>;
      loras: AdvertisedLora[];
      device: string | null;
      notice: string | null;
      heartbeat_at: Date;
      alive: boolean;
      running_job_id: string | null;
    }>(
      `SELECT w.id, w.host, w.models, w.model_info, w.loras, w.device, w.notice, w.heartbeat_at,
              w.heartbeat_at > now() - make_interval(secs => $1::double precision / 1000) AS alive,
              (SELECT j.id FROM jobs j WHERE j.worker_id = w.id AND j.state = 'running' ORDER BY j.seq LIMIT 1) AS running_job_id
       FROM workers w ORDER BY w.id`,
      [staleMs],
    );
    return rows.map((row) => ({
      id: row.id,
      host: row.host,
      models: row.models,
      modelInfo: row.model_info,
      loras: row.loras,
      device: row.device,
      notice: row.notice,
      heartbeatAt: row.heartbeat_at.toISOString(),
      alive: row.alive,
      runningJobId: row.running_job_id,
    }));
  }

  /**
   * Jobs whose run was cut off: running, but held by no worker that heartbeat within `staleMs` (with no workers
   * registered at all, every running job). Each gets one more run; one that had its retry fails as `interrupted`;
   * one marked for cancel ends cancelled. Safe for several workers to call at once: each row is settled once.
   */
  async recoverInterrupted(staleMs = 0): Promise<{ resumed: string[]; failed: string[] }> {
    const { rows } = await this.pool.query<{ id: string; state: JobState }>(
      `WITH cut_off AS (
         SELECT id FROM jobs j WHERE state = 'running' AND NOT EXISTS (
           SELECT 1 FROM workers w WHERE w.id = j.worker_id AND w.heartbeat_at > now() - make_interval(secs => $2::double precision / 1000))
         FOR UPDATE SKIP LOCKED)
       UPDATE jobs SET
         state = CASE WHEN cancel_requested THEN 'cancelled' WHEN attempts < $1 THEN 'queued' ELSE 'failed' END,
         error_code = CASE WHEN NOT cancel_requested AND attempts >= $1 THEN 'interrupted' END,
         error_message = CASE WHEN NOT cancel_requested AND attempts >= $1
           THEN 'the worker running this job stopped, ' || attempts || ' times; not retried again' END,
         finished_at = CASE WHEN cancel_requested OR attempts >= $1 THEN $3 END,
         started_at = NULL, worker_id = NULL, progress_step = NULL, progress_total = NULL
       FROM cut_off WHERE jobs.id = cut_off.id
       RETURNING jobs.id, jobs.state, pg_notify('${JOBS_CHANNEL}', CASE WHEN jobs.state = 'queued' THEN 'enqueued ' ELSE 'ended ' END || jobs.id)`,
      [MAX_ATTEMPTS, staleMs, now()],
    );
    for (const row of rows) if (row.state !== "queued") this.events.emit("ended", row.id);
    return { resumed: rows.filter((row) => row.state === "queued").map((row) => row.id), failed: rows.filter((row) => row.state === "failed").map((row) => row.id) };
  }
}
