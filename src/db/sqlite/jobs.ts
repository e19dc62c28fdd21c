// Every statement on the jobs table lives here, beside the guard it applies: longer than most files, read as one.
// better-sqlite3 answers synchronously; the port is async, so each call resolves at once.
import { randomUUID } from "node:crypto";
import type { GenerationRequest } from "../../core/generation.js";
import { JobEvents } from "../../queue/jobEvents.js";
import { canTransition, JOB_STATES, JobTakenOver, MAX_ATTEMPTS, type Job, type JobError, type JobState } from "../../queue/job.js";
import type { FinishOptions, ImageRecord, JobStore, JobTaker } from "../../queue/ports.js";
import type { Db } from "./database.js";
import type { SqliteImageIndex } from "./images.js";

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
    error: row.error_code ? ({ code: row.error_code, message: row.error_message ?? "" } as JobError) : null,
    createdAt: row.created_at,
    startedAt: row.started_at,
    finishedAt: row.finished_at,
  };
}

const now = () => new Date().toISOString();

/**
 * The durable FIFO. Every state change is one guarded UPDATE, so a job can never be taken twice, and each is
 * announced on `events` once it is committed.
 */
export class SqliteJobStore implements JobStore {
  readonly events = new JobEvents();
  private readonly statements;

  /**
   * `images`: indexed in the transaction that marks their job done. `progressDb`: where progress is written, a
   * connection with a short busy wait (progress may be skipped).
   */
  constructor(
    private readonly db: Db,
    private readonly images: SqliteImageIndex,
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

  async enqueue(request: GenerationRequest): Promise<Job> {
    const id = randomUUID();
    this.statements.insert.run(id, JSON.stringify(request), now());
    this.events.emit("enqueued", id);
    return this.getNow(id)!;
  }

  async get(jobId: string): Promise<Job | undefined> {
    return this.getNow(jobId);
  }

  private getNow(jobId: string): Job | undefined {
    const row = this.statements.byId.get(jobId) as JobRow | undefined;
    return row && toJob(row);
  }

  /**
   * A done job for images found in storage that this database does not know (the SQLite file was lost): every
   * indexed image has its job, so job_status answers for it too. Nothing happens to a job that exists.
   */
  async insertRecovered(request: GenerationRequest, images: readonly ImageRecord[]): Promise<void> {
    const first = images[0];
    if (!first) return;
    this.db.transaction(() => {
      this.statements.insertRecovered.run(first.jobId, JSON.stringify(request), first.key, first.createdAt, first.createdAt);
      for (const image of images) this.images.add(image);
    })();
  }

  async countByState(): Promise<Record<JobState, number>> {
    const counts = Object.fromEntries(JOB_STATES.map((state) => [state, 0])) as Record<JobState, number>;
    for (const { state, n } of this.statements.countByState.all() as Array<{ state: JobState; n: number }>) counts[state] = n;
    return counts;
  }

  async active(queuedLimit: number): Promise<Job[]> {
    return (this.statements.active.all(queuedLimit) as JobRow[]).map(toJob);
  }

  async position(job: Job): Promise<number> {
    const { ahead } = this.statements.queuedAhead.get(job.seq) as { ahead: number };
    return ahead + 1;
  }

  /**
   * Takes the oldest queued job and marks it running, or returns undefined when the queue is empty. One machine
   * runs whatever is queued, so only `leaseOwner` counts: the job is taken only while that owner still holds the
   * worker lease, checked in the same transaction, so a process that has just lost the lease can never start a job
   * the new holder would not know about.
   */
  async takeNext({ leaseOwner }: JobTaker = {}): Promise<Job | undefined> {
    // IMMEDIATE: take the write lock before reading, so a concurrent taker waits instead of failing to upgrade.
    return this.db
      .transaction(() => {
        if (leaseOwner !== undefined && (this.statements.leaseOwner.get() as { owner: string } | undefined)?.owner !== leaseOwner) {
          return undefined;
        }
        const row = this.statements.nextQueued.get() as JobRow | undefined;
        if (!row) return undefined;
        const changed = this.statements.take.run(now(), row.id).changes;
        return changed === 1 ? this.getNow(row.id) : undefined;
      })
      .immediate();
  }

  /** The first run fixes the key; a retry keeps it, so it overwrites its own half-finished upload. */
  async fixImageKey(jobId: string, proposedKey: string): Promise<string> {
    this.statements.fixImageKey.run(proposedKey, jobId);
    return this.getNow(jobId)!.imageKey!;
  }

  /**
   * Moves a job to a terminal state; returns false when it was no longer in `from` or, given `attempt`, when
   * another run has taken it since (a worker that lost its lease must not end a job it no longer holds).
   */
  async finish(jobId: string, from: JobState, to: "done" | "failed" | "cancelled", how: FinishOptions = {}): Promise<boolean> {
    const finished = this.finishRow(jobId, from, to, how);
    if (finished) this.events.emit("ended", jobId);
    return finished;
  }

  /**
   * Marks the running job `done` and indexes its images in the same transaction: a listed image always has a done
   * job. Throws JobTakenOver, with nothing written, when another run holds the job now.
   */
  async completeWithImages(jobId: string, attempt: number, images: readonly ImageRecord[]): Promise<void> {
    this.db.transaction(() => {
      for (const image of images) this.images.add(image);
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

  async setProgress(jobId: string, attempt: number, step: number, totalSteps: number): Promise<void> {
    if (this.statements.progress.run(step, totalSteps, jobId, attempt).changes === 1) this.events.emit("progress", jobId);
  }

  /** Marks a running job for cancellation; the process running it sees the mark within a fraction of a second. */
  async requestCancel(jobId: string): Promise<boolean> {
    const marked = this.statements.requestCancel.run(jobId).changes === 1;
    if (marked) this.events.emit("cancelRequested", jobId);
    return marked;
  }

  async isCancelRequested(jobId: string): Promise<boolean> {
    const row = this.statements.cancelRequested.get(jobId) as { cancel_requested: number } | undefined;
    return row?.cancel_requested === 1;
  }

  /**
   * Puts a running job back at its place in line (its seq is unchanged, so it runs next).
   * `countAttempt: false` when nothing ran (the engine would not start): the job keeps its retry.
   */
  async requeue(jobId: string, how: { countAttempt?: boolean; attempt?: number } = {}): Promise<boolean> {
    return this.requeueRow(jobId, how);
  }

  private requeueRow(jobId: string, { countAttempt = true, attempt }: { countAttempt?: boolean; attempt?: number }): boolean {
    return this.statements.requeue.run({ id: jobId, uncount: countAttempt ? 0 : 1, attempt: attempt ?? null }).changes === 1;
  }

  /**
   * When a worker takes the lease, no job can really be running: any marked so was cut off when its process died.
   * Each gets one more run; a job that already had its retry fails as `interrupted`.
   */
  async recoverInterrupted(): Promise<{ resumed: string[]; failed: string[] }> {
    const { cancelled, ...recovered } = this.db.transaction(() => {
      const resumed: string[] = [];
      const failed: string[] = [];
      const cancelled: string[] = [];
      for (const row of this.statements.runningAtStart.all() as JobRow[]) {
        if (row.cancel_requested === 1) {
          this.finishRow(row.id, "running", "cancelled", {});
          cancelled.push(row.id);
        } else if (row.attempts < MAX_ATTEMPTS) {
          this.requeueRow(row.id, {});
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
