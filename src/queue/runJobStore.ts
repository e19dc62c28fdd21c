import type { ImageIndex, ImageRecord } from "../db/sqlite/images.js";
import type { PgImageIndex } from "../db/postgres/images.js";
import type { JobState } from "./job.js";
import type { JobStore } from "../db/sqlite/jobs.js";
import type { PgJobStore } from "../db/postgres/jobs.js";
import type { Maybe } from "./queueStore.js";

/**
 * What one job's run needs of the database, whichever it is: the embedded SQLite (answers at once) or Postgres
 * for several hosts (answers later). runJob awaits every call, so it is written once for both.
 */
export interface RunJobStore {
  /** The first run fixes the key; a retry keeps it. */
  fixImageKey(jobId: string, proposedKey: string): Maybe<string>;
  /** Marks the job done and indexes its images in one transaction; throws JobTakenOver when another run holds it. */
  completeWithImages(jobId: string, attempt: number, images: readonly ImageRecord[]): Maybe<void>;
  finish(jobId: string, from: JobState, to: "done" | "failed" | "cancelled", how?: { error?: { code: string; message: string }; attempt?: number }): Maybe<boolean>;
  requeue(jobId: string, how?: { countAttempt?: boolean; attempt?: number }): Maybe<boolean>;
  /** Advisory: a write the database refuses may throw (synchronously on SQLite) or reject; the run goes on. */
  setProgress(jobId: string, attempt: number, step: number, totalSteps: number): Maybe<void>;
}

export function sqliteRunStore(jobs: JobStore, index: ImageIndex): RunJobStore {
  return {
    fixImageKey: (jobId, key) => jobs.fixImageKey(jobId, key),
    completeWithImages: (jobId, attempt, images) => jobs.complete(jobId, attempt, () => images.forEach((image) => index.add(image))),
    finish: (jobId, from, to, how) => jobs.finish(jobId, from, to, how),
    requeue: (jobId, how) => jobs.requeue(jobId, how),
    setProgress: (jobId, attempt, step, total) => jobs.setProgress(jobId, attempt, step, total),
  };
}

export function pgRunStore(jobs: PgJobStore, index: PgImageIndex): RunJobStore {
  return {
    fixImageKey: (jobId, key) => jobs.fixImageKey(jobId, key),
    completeWithImages: (jobId, attempt, images) =>
      jobs.complete(jobId, attempt, async (client) => {
        for (const image of images) await index.add(image, client);
      }),
    finish: (jobId, from, to, how) => jobs.finish(jobId, from, to, how),
    requeue: (jobId, how) => jobs.requeue(jobId, how),
    setProgress: (jobId, attempt, step, total) => jobs.setProgress(jobId, attempt, step, total),
  };
}
