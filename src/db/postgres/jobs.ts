// The jobs table on Postgres, for several GPU hosts sharing one queue: the same guarded statements as SQLite's
// (db/sqlite/jobs.ts), with rows taken by FOR UPDATE SKIP LOCKED and every change announced on a NOTIFY channel.
import { randomUUID } from "node:crypto";
import type pg from "pg";
import type { GenerationRequest } from "../../core/generation.js";
import { JobEvents } from "../../queue/jobEvents.js";
import { canTransition, JOB_STATES, JobTakenOver, MAX_ATTEMPTS, type Job, type JobError, type JobState } from "../../queue/job.js";
import type { FinishOptions, ImageRecord, JobStore, JobTaker } from "../../queue/ports.js";
import type { PgImageIndex } from "./images.js";
import { inTransaction } from "./pool.js";

/** The channel every change is announced on: `<event> <jobId>`, for front-ends and workers on other hosts. */
export const JOBS_CHANNEL = "kitty_jobs";

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
    error: row.error_code ? ({ code: row.error_code, message: row.error_message ?? "" } as JobError) : null,
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

/**
 * The durable FIFO on Postgres. The same contract as the SQLite JobStore (one test-suite runs against both), async,
 * for many workers: takeNext hands each job to exactly one of them, only to a worker that has the job's model.
 */
export class PgJobStore implements JobStore {
  readonly events = new JobEvents();

  /** `images`: indexed in the transaction that marks their job done. */
  constructor(
    private readonly pool: pg.Pool,
    private readonly images: PgImageIndex,
  ) {}

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
   * A done job for images found in storage that the database does not know (reindex), with their index rows in
   * one transaction. Nothing happens to a job that exists.
   */
  async insertRecovered(request: GenerationRequest, images: readonly ImageRecord[]): Promise<void> {
    const first = images[0];
    if (!first) return;
    await inTransaction(this.pool, async (client) => {
      await client.query(
        `INSERT INTO jobs (id, state, request, model, attempts, image_key, created_at, finished_at)
         VALUES ($1, 'done', $2, $3, 1, $4, $5, $5) ON CONFLICT (id) DO NOTHING`,
        [first.jobId, JSON.stringify(request), request.model.name, first.key, first.createdAt],
      );
      for (const image of images) await this.images.add(image, client);
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
  async takeNext({ workerId, models, can }: JobTaker = {}): Promise<Job | undefined> {
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
   * Marks the running job done and indexes its images in the same transaction. Throws JobTakenOver, with nothing
   * written, when another run holds the job now (a worker declared dead finishing late).
   */
  async completeWithImages(jobId: string, attempt: number, images: readonly ImageRecord[]): Promise<void> {
    await inTransaction(this.pool, async (client) => {
      for (const image of images) await this.images.add(image, client);
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
