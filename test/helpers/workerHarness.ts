import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterEach } from "vitest";
import { openDatabase, type Db } from "../../src/db/sqlite/database.js";
import { SqliteImageIndex } from "../../src/db/sqlite/images.js";
import { SqliteJobStore } from "../../src/db/sqlite/jobs.js";
import { SqliteLease } from "../../src/db/sqlite/lease.js";
import type { Job } from "../../src/queue/job.js";
import { JobQueue } from "../../src/queue/jobQueue.js";
import { LeasedJobSource } from "../../src/queue/jobSources.js";
import { Worker } from "../../src/queue/worker.js";
import { TIMING } from "../../src/app/timing.js";
import type { ImageStore } from "../../src/storage/imageStore.js";
import { LocalImageStore } from "../../src/storage/local.js";
import type { ImageSidecar } from "../../src/images/sidecar.js";
import { StagingArea } from "../../src/images/staging.js";
import { FakeEngine } from "./fakeEngine.js";
import { waitUntil } from "./waitUntil.js";

/** Local storage whose put() fails with the queued errors first, or always (a MinIO outage, a revoked key). */
export class FlakyStore implements ImageStore {
  readonly kind = "local";
  readonly failures: unknown[] = [];
  failForever: unknown = null;
  puts = 0;
  beforePut: () => void = () => {};

  constructor(private readonly inner: LocalImageStore) {}

  ensureReady = () => this.inner.ensureReady();
  readSidecar = (key: string) => this.inner.readSidecar(key);
  listImages = (prefix: string) => this.inner.listImages(prefix);
  readImage = (key: string) => this.inner.readImage(key);
  isPermanentError = (error: unknown) => this.inner.isPermanentError(error);
  storageUri = (key: string) => this.inner.storageUri(key);
  downloadUrl = (key: string) => this.inner.downloadUrl(key);

  async put(key: string, pngPath: string, sidecar: ImageSidecar, previewPath?: string): Promise<void> {
    this.puts++;
    this.beforePut();
    if (this.failForever) throw this.failForever;
    const failure = this.failures.shift();
    if (failure) throw failure;
    await this.inner.put(key, pngPath, sidecar, previewPath);
  }
}

/** An error as node:fs or a socket raises it, with its code. */
export const fileError = (code: string) => Object.assign(new Error(`${code}: simulated`), { code });

export interface WorkerHarness {
  dir: string;
  db: Db;
  jobs: SqliteJobStore;
  queue: JobQueue;
  index: SqliteImageIndex;
  local: LocalImageStore;
  store: FlakyStore;
  staging: StagingArea;
  engine: FakeEngine;
  worker: Worker;
  /** The job once it has ended (fails the test after 10 s). */
  ended(jobId: string): Promise<Job>;
  /** Resolves once the job has reported a denoising step. */
  running(jobId: string): Promise<void>;
}

const harnesses: WorkerHarness[] = [];

afterEach(async () => {
  for (const { worker, db, dir } of harnesses.splice(0)) {
    await worker.stop();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * The real worker, job store, lease, index, staging and local store on a temp database, around a FakeEngine: on a
 * fresh temp dir, or on `dir` again (a restart: same database, store and staging).
 */
export function setUpWorker(dir: string = mkdtempSync(path.join(tmpdir(), "kitty-worker-"))): WorkerHarness {
  const db = openDatabase(path.join(dir, "kitty.sqlite"));
  const index = new SqliteImageIndex(db);
  const jobs = new SqliteJobStore(db, index);
  const lease = new SqliteLease(db);
  const local = new LocalImageStore(path.join(dir, "files"));
  const store = new FlakyStore(local);
  const staging = new StagingArea(path.join(dir, "staging"));
  const engine = new FakeEngine();
  const log = pino({ level: "silent" });
  const timing = { backoff: { first: 5, max: 20 }, queuePollMs: 20, cancelPollMs: 10, leaseHeartbeatMs: 40 };
  const worker = new Worker({
    jobs,
    source: new LeasedJobSource(jobs, lease, timing, log),
    heard: jobs.events,
    engine,
    store,
    staging,
    keyPrefix: "images/",
    log,
    timing,
  });
  const queue = new JobQueue(jobs, { events: jobs.events, pollMs: TIMING.sqlite.waitPollMs, waitingReason: async () => (await lease.holder())?.notice ?? null });
  const harness: WorkerHarness = {
    dir,
    db,
    jobs,
    queue,
    index,
    local,
    store,
    staging,
    engine,
    worker,
    ended: (jobId) => queue.waitForEnd(jobId, 10_000),
    running: async (jobId) => {
      await waitUntil("the job reports a step", async () => ((await jobs.get(jobId))?.progress?.step ?? 0) > 0);
    },
  };
  harnesses.push(harness);
  return harness;
}

/** Makes the index refuse rows (a database busy for a while) until the returned function is called. */
export function holdIndexing(h: WorkerHarness): { refusals: () => number; release: () => void } {
  const add = h.index.add.bind(h.index);
  let refusals = 0;
  let held = true;
  h.index.add = (record) => {
    if (held) {
      refusals++;
      throw Object.assign(new Error("SQLITE_BUSY: database is locked"), { code: "SQLITE_BUSY" });
    }
    add(record);
  };
  return { refusals: () => refusals, release: () => (held = false) };
}
