import type { GenerationRequest } from "../core/generation.js";
import type { JobEvents } from "./jobEvents.js";
import type { JobState } from "./job.js";
import type { Job, JobStore } from "../db/sqlite/jobs.js";
import type { PgJobStore } from "../db/postgres/jobs.js";
import type { WorkerLease } from "../db/sqlite/lease.js";

/** A value now (SQLite answers in-process) or later (Postgres answers over the network); callers await either. */
export type Maybe<T> = T | Promise<T>;

/**
 * What the doors (tools, REST, gallery, metrics) need of the queue's database, whichever it is. JobQueue is written
 * once over it; `events` carries changes as soon as they are known, `pollMs` is how often waiters re-read the row
 * for the changes nobody announces to this process.
 */
export interface QueueStore {
  enqueue(request: GenerationRequest): Maybe<Job>;
  get(jobId: string): Maybe<Job | undefined>;
  position(job: Job): Maybe<number>;
  countByState(): Maybe<Record<JobState, number>>;
  active(queuedLimit: number): Maybe<Job[]>;
  /** Drops a queued job (false when it was taken meanwhile). */
  cancelQueued(jobId: string): Maybe<boolean>;
  requestCancel(jobId: string): Maybe<boolean>;
  /** Why `job` waits, when something is known to stand in its way (the engine will not start, no worker has its model). */
  waitingReason(job: Job): Maybe<string | null>;
  readonly events: JobEvents;
  readonly pollMs: number;
}

/** Other processes on the same data dir announce nothing here: their changes are seen at the next look. */
const SQLITE_POLL_MS = 250;
/** Every change on Postgres is announced on the jobs channel; the poll only covers a channel that was down. */
const PG_POLL_MS = 2_000;

/** The calls both job stores answer alike (one synchronously, one later). */
function sharedCalls(jobs: JobStore | PgJobStore): Omit<QueueStore, "waitingReason" | "pollMs"> {
  return {
    enqueue: (request) => jobs.enqueue(request),
    get: (jobId) => jobs.get(jobId),
    position: (job) => jobs.position(job),
    countByState: () => jobs.countByState(),
    active: (limit) => jobs.active(limit),
    cancelQueued: (jobId) => jobs.finish(jobId, "queued", "cancelled"),
    requestCancel: (jobId) => jobs.requestCancel(jobId),
    events: jobs.events,
  };
}

export function sqliteQueueStore(jobs: JobStore, lease: WorkerLease): QueueStore {
  return { ...sharedCalls(jobs), waitingReason: () => lease.holder()?.notice ?? null, pollMs: SQLITE_POLL_MS };
}

/**
 * `staleMs`: how long a silent worker still counts as serving its models. `heard`: the changes the jobs channel
 * brings, from every host and this process alike (default: only this process's own, for a store without a listener).
 */
export function pgQueueStore(jobs: PgJobStore, staleMs: number, heard: JobEvents = jobs.events): QueueStore {
  return {
    ...sharedCalls(jobs),
    events: heard,
    async waitingReason(job) {
      const workers = await jobs.workers(staleMs);
      // A running job waits on what its worker said (storage down, the engine not starting).
      if (job.state === "running") return workers.find((worker) => worker.runningJobId === job.id)?.notice ?? null;
      const model = job.request.model.name;
      const serving = workers.filter((worker) => worker.alive && worker.models.includes(model));
      // Queued: it waits on the workers that could run it; when every one of them is stuck, say on what.
      if (serving.length > 0) return serving.every((worker) => worker.notice) ? serving[0]!.notice : null;
      const served = [...new Set(workers.filter((worker) => worker.alive).flatMap((worker) => worker.models))];
      return (
        `no live worker has model '${model}'; it waits for one (start \`kitty-images worker\` on a host whose models.yaml has it). ` +
        (served.length ? `Live workers serve: ${served.join(", ")}.` : "No worker is live.")
      );
    },
    pollMs: PG_POLL_MS,
  };
}
