import type { Backoff } from "../queue/retry.js";

/** Doubling waits for an engine that will not start, storage that will not take an image, a database that is down. */
const BACKOFF: Backoff = { first: 1_000, max: 30_000 };

/**
 * Every interval the app runs on, in one table: one machine's SQLite file, and the studio's shared Postgres queue.
 * Tests pass smaller ones through AppOverrides.timing.
 */
export const TIMING = {
  sqlite: {
    backoff: BACKOFF,
    /** Other processes on the data dir cannot wake the lease holder: it looks for their jobs this often. */
    queuePollMs: 1_000,
    /** A cancel from another process is a mark in the row, read this often while a job runs. */
    cancelPollMs: 200,
    /** The lease's heartbeat; a process that does not hold it asks again this often. */
    leaseHeartbeatMs: 2_000,
    /** Waiters (job_status) re-read the row this often: other processes announce nothing here. */
    waitPollMs: 250,
  },
  postgres: {
    backoff: BACKOFF,
    /** Every change is announced on the jobs channel; the poll only covers a channel that was down. */
    queuePollMs: 5_000,
    cancelPollMs: 1_000,
    waitPollMs: 2_000,
    /** How often a worker heartbeats, and how long silence means a host is dead (its running job goes to another). */
    heartbeatMs: 2_000,
    staleMs: 15_000,
  },
  /** Storage is checked in the background this long after start, after the client's first requests. */
  storageCheckDelayMs: 300,
  /** Starts in a row (backed off 1, 2, 4, 8 s by the worker) before a runner that will not start counts as broken. */
  runnerStartAttempts: 5,
  /** The runner's first start imports torch and may load a model: minutes on a cold disk. */
  runnerReadyTimeoutMs: 300_000,
};

export type SqliteTiming = (typeof TIMING)["sqlite"];
