/**
 * What the 0.2.0 release (commit 5dba63c) left in its job databases: the jobs and images that
 * test/fixtures/make-release-databases.mjs made with the release's own code, dumped in
 * test/fixtures/release-0.2.0.{sqlite,postgres}.sql. Both stores' release tests read them back against this.
 */
export const ID = {
  doneSingle: "d0000001-0000-4000-8000-000000000001",
  doneBatch: "d0000002-0000-4000-8000-000000000002",
  failed: "fa000003-0000-4000-8000-000000000003",
  cancelled: "ca000004-0000-4000-8000-000000000004",
  running: "e0000005-0000-4000-8000-000000000005",
  runningCancel: "e0000006-0000-4000-8000-000000000006",
  runningRetried: "e0000007-0000-4000-8000-000000000007",
  queued: "a0000008-0000-4000-8000-000000000008",
  queuedLora: "a0000009-0000-4000-8000-000000000009",
} as const;
export const KEY = {
  single: "images/20260115_090011_d0000001.png",
  batchFirst: "images/20260115_090103_d0000002.png",
  batchSecond: "images/20260115_090103_d0000002_2.png",
};

/** Each job as the release left it: what today's JobStore.get must read back. */
export const JOBS = [
  { id: ID.doneSingle, seq: 1, state: "done", attempts: 1, imageKey: KEY.single, progress: null, cancelRequested: false, error: null, createdAt: "2026-01-15T09:00:00.000Z", startedAt: "2026-01-15T09:00:02.000Z", finishedAt: "2026-01-15T09:00:23.000Z" },
  { id: ID.doneBatch, seq: 2, state: "done", attempts: 1, imageKey: KEY.batchFirst, progress: null, cancelRequested: false, error: null, createdAt: "2026-01-15T09:00:53.000Z", startedAt: "2026-01-15T09:00:54.000Z", finishedAt: "2026-01-15T09:01:15.000Z" },
  {
    id: ID.failed,
    seq: 3,
    state: "failed",
    attempts: 1,
    imageKey: null,
    progress: { step: 2, totalSteps: 30 },
    cancelRequested: false,
    error: { code: "out_of_memory", message: "CUDA out of memory: tried to allocate 2.25 GiB on cuda:0; try a smaller size or steps" },
    createdAt: "2026-01-15T09:01:45.000Z",
    startedAt: "2026-01-15T09:01:46.000Z",
    finishedAt: "2026-01-15T09:01:54.000Z",
  },
  { id: ID.cancelled, seq: 4, state: "cancelled", attempts: 0, imageKey: null, progress: null, cancelRequested: false, error: null, createdAt: "2026-01-15T09:02:24.000Z", startedAt: null, finishedAt: "2026-01-15T09:02:28.000Z" },
  { id: ID.running, seq: 5, state: "running", attempts: 1, imageKey: null, progress: { step: 12, totalSteps: 30 }, cancelRequested: false, error: null, createdAt: "2026-01-15T09:02:58.000Z", startedAt: "2026-01-15T09:02:59.000Z", finishedAt: null },
  { id: ID.runningCancel, seq: 6, state: "running", attempts: 1, imageKey: null, progress: { step: 7, totalSteps: 20 }, cancelRequested: true, error: null, createdAt: "2026-01-15T09:03:13.000Z", startedAt: "2026-01-15T09:03:14.000Z", finishedAt: null },
  { id: ID.runningRetried, seq: 7, state: "running", attempts: 2, imageKey: null, progress: { step: 3, totalSteps: 30 }, cancelRequested: false, error: null, createdAt: "2026-01-15T09:03:28.000Z", startedAt: "2026-01-15T09:03:32.000Z", finishedAt: null },
  { id: ID.queued, seq: 8, state: "queued", attempts: 0, imageKey: null, progress: null, cancelRequested: false, error: null, createdAt: "2026-01-15T09:03:54.000Z", startedAt: null, finishedAt: null },
  { id: ID.queuedLora, seq: 9, state: "queued", attempts: 0, imageKey: null, progress: null, cancelRequested: false, error: null, createdAt: "2026-01-15T09:03:55.000Z", startedAt: null, finishedAt: null },
] as const;

/** The release's three images, newest first, as ImageIndex.latest lists them. */
export const LATEST_IMAGES = [
  { index: 1, key: KEY.batchSecond, jobId: ID.doneBatch, seed: 43, createdAt: "2026-01-15T09:01:15.001Z" },
  { index: 2, key: KEY.batchFirst, jobId: ID.doneBatch, seed: 42, createdAt: "2026-01-15T09:01:15.000Z" },
  { index: 3, key: KEY.single, jobId: ID.doneSingle, seed: 1234, createdAt: "2026-01-15T09:00:23.000Z" },
];
