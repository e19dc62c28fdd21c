// Every statement on the jobs table lives here, beside the guard it applies: longer than most files, read as one.
import { randomUUID } from "node:crypto";
import type { Db } from "./database.js";
import type { GenerationRequest } from "../../core/generation.js";
import { JobEvents } from "../../queue/jobEvents.js";
import { canTransition, JOB_STATES, MAX_ATTEMPTS, type JobState } from "../../queue/job.js";

export interface Job {
  id: string;
  seq: number;
  state: JobState;
  request: GenerationRequest;
  attempts: number;
  imageKey: string | null;
  progress: { step: number; totalSteps: number } | null;
  cancelRequested: boolean;
  error: { code: string; message: string } | null;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
}

interface JobRow {
  seq: number;
  id: string;
  state: JobState;
  request: string;
  attempts: number;
  image_key: string | null;
  progress_step: number | null;
  progress_total: number | null;
  cancel_requested: number;
  error_code: string | null;
  error_message: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
}

function toJob(row: JobRow): Job {
  return {
    id: row.id,
    seq: row.seq,
    state: row.state,
    request: JSON.parse(row.request) as GenerationRequest,
    attempts: row.attempts,
    imageKey: row.image_key,
    progress: row.progress_step === null || row.progress_total === null ? null : { step: row.progress_step, totalSteps: row.progress_total },
    cancelRequested: row.cancel_requested === 1,
    error: row.error_code ? { code: row.error_code, message: row.error_message ?? "" } : null,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

const now = () => new Date().toISOString();

interface FinishOptions {
  error?: { code: string; message: string };
  /** Fences a run that lost the job: only the run with this attempt number may end it. */
  attempt?: number;
}

/** The job changed hands: another run holds it now (this process lost its lease, or it was recovered). */
export class JobTakenOver extends Error {
  constructor(jobId: string) {
    super(`job ${jobId} is held by another run now`);
    this.name = "JobTakenOver";
  }
}

/**
 * The durable FIFO. Every state change is one guarded UPDATE, so a job can never be taken twice, and each is
 * announced on `events` once it is committed.
 */
export class JobStore {
  readonly events = new JobEvents();
  private readonly statements;

  /** `progressDb`: where progress is written, a connection with a short busy wait (progress may be skipped). */
  constructor(
    private readonly db: Db,
    progressDb: Db = db,
  ) {
    this.statements = {
      insert: db.prepare(`INSERT INTO jobs (id, state, request, created_at) VALUES (?, 'queued', ?, ?)`),
      byId: db.prepare(`SELECT * FROM jobs WHERE id = ?`),
      nextQueued: db.prepare(`SELECT * FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT 1`),
      queuedAhead: db.prepare(`SELECT COUNT(*) AS ahead FROM jobs WHERE state = 'queued' AND seq < ?`),
      take: db.prepare(
        `UPDATE jobs SET state = 'running', attempts = attempts + 1, started_at = ? WHERE id = ? AND state = 'queued'`,
      ),
      fixImageKey: db.prepare(`UPDATE jobs SET image_key = COALESCE(image_key, ?) WHERE id = ?`),
      // @attempt fences a worker that lost its lease: only the run that holds the job may end it
      finish: db.prepare(
        `UPDATE jobs SET state = @to, error_code = @code, error_message = @message, finished_at = @at
         WHERE id = @id AND state = @from AND (@attempt IS NULL OR attempts = @attempt)`,
      ),
      requeue: db.prepare(
        `UPDATE jobs SET state = 'queued', started_at = NULL, progress_step = NULL, progress_total = NULL, attempts = attempts - @uncount
         WHERE id = @id AND state = 'running' AND (@attempt IS NULL OR attempts = @attempt)`,
      ),
      progress: progressDb.prepare(`UPDATE jobs SET progress_step = ?, progress_total = ? WHERE id = ? AND state = 'running' AND attempts = ?`),
      requestCancel: db.prepare(`UPDATE jobs SET cancel_requested = 1 WHERE id = ? AND state = 'running'`),
      cancelRequested: db.prepare(`SELECT cancel_requested FROM jobs WHERE id = ?`),
      runningAtStart: db.prepare(`SELECT * FROM jobs WHERE state = 'running' ORDER BY seq`),
      leaseOwner: db.prepare(`SELECT owner FROM worker_lease WHERE id = 1`),
      countByState: db.prepare(`SELECT state, COUNT(*) AS n FROM jobs GROUP BY state`),
      // Running first, then the queue in the order it will run; both walk jobs_by_state.
      active: db.prepare(
        `SELECT * FROM (SELECT * FROM jobs WHERE state = 'running' ORDER BY seq)
         UNION ALL SELECT * FROM (SELECT * FROM jobs WHERE state = 'queued' ORDER BY seq LIMIT ?)`,
      ),
      insertRecovered: db.prepare(
        `INSERT INTO jobs (id, state, request, attempts, image_key, created_at, finished_at)
         VALUES (?, 'done', ?, 1, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
      ),
    };
  }

  enqueue(request: GenerationRequest): Job {
    const id = randomUUID();
    this.statements.insert.run(id, JSON.stringify(request), now());
    this.events.emit("enqueued", id);
    return this.get(id)!;
  }

  get(jobId: string): Job | undefined {
    const row = this.statements.byId.get(jobId) as JobRow | undefined;
    return row && toJob(row);
  }

  /**
   * A done job for an image found in storage that this database does not know (the SQLite file was lost):
   * every indexed image has its job, so job_status answers for it too. Nothing happens when the job exists.
   */
  insertRecovered(jobId: string, request: GenerationRequest, imageKey: string, createdAt: string): void {
    this.statements.insertRecovered.run(jobId, JSON.stringify(request), imageKey, createdAt, createdAt);
  }

  /** How many jobs are in each state (states with none are 0). */
  countByState(): Record<JobState, number> {
    const counts = Object.fromEntries(JOB_STATES.map((state) => [state, 0])) as Record<JobState, number>;
    for (const { state, n } of this.statements.countByState.all() as Array<{ state: JobState; n: number }>) counts[state] = n;
    return counts;
  }

  /** The running job(s), then up to `queuedLimit` queued jobs in the order they will run. */
  active(queuedLimit: number): Job[] {
    return (this.statements.active.all(queuedLimit) as JobRow[]).map(toJob);
  }

  /** 1 = next to run. Only meaningful for a queued job. */
  position(job: Job): number {
    const { ahead } = this.statements.queuedAhead.get(job.seq) as { ahead: number };
    return ahead + 1;
  }

  /**
   * Takes the oldest queued job and marks it running, or returns undefined when the queue is empty.
   * With `leaseOwner`, only while that owner still holds the worker lease, checked in the same transaction:
   * a process that has just lost the lease can never start a job the new holder would not know about.
   */
  takeNext(leaseOwner?: string): Job | undefined {
    // IMMEDIATE: take the write lock before reading, so a concurrent taker waits instead of failing to upgrade.
    return this.db
      .transaction(() => {
        if (leaseOwner !== undefined && (this.statements.leaseOwner.get() as { owner: string } | undefined)?.owner !== leaseOwner) {
          return undefined;
        }
        const row = this.statements.nextQueued.get() as JobRow | undefined;
        if (!row) return undefined;
        const changed = this.statements.take.run(now(), row.id).changes;
        return changed === 1 ? this.get(row.id) : undefined;
      })
      .immediate();
  }

  /** The first run fixes the key; a retry keeps it, so it overwrites its own half-finished upload. */
  fixImageKey(jobId: string, proposedKey: string): string {
    this.statements.fixImageKey.run(proposedKey, jobId);
    return this.get(jobId)!.imageKey!;
  }

  /**
   * Moves a job to a terminal state; returns false when it was no longer in `from` or, given `attempt`, when
   * another run has taken it since (a worker that lost its lease must not end a job it no longer holds).
   */
  finish(jobId: string, from: JobState, to: "done" | "failed" | "cancelled", how: FinishOptions = {}): boolean {
    const finished = this.finishRow(jobId, from, to, how);
    if (finished) this.events.emit("ended", jobId);
    return finished;
  }

  /**
   * Marks the running job `done` and runs `alongside` (indexing its image) in the same transaction: a listed
   * image always has a done job. Throws JobTakenOver, with nothing written, when another run holds the job now.
   */
  complete(jobId: string, attempt: number, alongside: () => void): void {
    this.db.transaction(() => {
      alongside();
      if (!this.finishRow(jobId, "running", "done", { attempt })) throw new JobTakenOver(jobId);
    })();
    this.events.emit("ended", jobId);
  }

  private finishRow(jobId: string, from: JobState, to: "done" | "failed" | "cancelled", { error, attempt }: FinishOptions): boolean {
    if (!canTransition(from, to)) throw new Error(`job state machine forbids ${from} -> ${to}`);
    const result = this.statements.finish.run({
      id: jobId,
      from,
      to,
      code: error?.code ?? null,
      message: error?.message ?? null,
      at: now(),
      attempt: attempt ?? null,
    });
    return result.changes === 1;
  }

  setProgress(jobId: string, attempt: number, step: number, totalSteps: number): void {
    if (this.statements.progress.run(step, totalSteps, jobId, attempt).changes === 1) this.events.emit("progress", jobId);
  }

  /** Marks a running job for cancellation; the process running it sees the mark within a fraction of a second. */
  requestCancel(jobId: string): boolean {
    const marked = this.statements.requestCancel.run(jobId).changes === 1;
    if (marked) this.events.emit("cancelRequested", jobId);
    return marked;
  }

  isCancelRequested(jobId: string): boolean {
    const row = this.statements.cancelRequested.get(jobId) as { cancel_requested: number } | undefined;
    return row?.cancel_requested === 1;
  }

  /**
   * Puts a running job back at its place in line (its seq is unchanged, so it runs next).
   * `countAttempt: false` when nothing ran (the engine would not start): the job keeps its retry.
   */
  requeue(jobId: string, { countAttempt = true, attempt }: { countAttempt?: boolean; attempt?: number } = {}): boolean {
    return this.statements.requeue.run({ id: jobId, uncount: countAttempt ? 0 : 1, attempt: attempt ?? null }).changes === 1;
  }

  /**
   * When a worker takes the lease, no job can really be running: any marked so was cut off when its process died.
   * Each gets one more run; a job that already had its retry fails as `interrupted`.
   */
  recoverInterrupted(): { resumed: string[]; failed: string[] } {
    const { cancelled, ...recovered } = this.db.transaction(() => {
      const resumed: string[] = [];
      const failed: string[] = [];
      const cancelled: string[] = [];
      for (const row of this.statements.runningAtStart.all() as JobRow[]) {
        if (row.cancel_requested === 1) {
          this.finishRow(row.id, "running", "cancelled", {});
          cancelled.push(row.id);
        } else if (row.attempts < MAX_ATTEMPTS) {
          this.requeue(row.id);
          resumed.push(row.id);
        } else {
          this.finishRow(row.id, "running", "failed", {
            error: { code: "interrupted", message: `the server stopped while this job ran, ${row.attempts} times; not retried again` },
          });
          failed.push(row.id);
        }
      }
      return { resumed, failed, cancelled };
    }).immediate();
    for (const jobId of [...recovered.failed, ...cancelled]) this.events.emit("ended", jobId);
    return recovered;
  }
}
