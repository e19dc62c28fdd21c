import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { openDatabase, type Db } from "../../src/db.js";
import { EngineJobError } from "../../src/engines/engine.js";
import { JobQueue } from "../../src/queue/jobQueue.js";
import { JobStore } from "../../src/queue/jobStore.js";
import { Worker } from "../../src/queue/worker.js";
import { WorkerLease } from "../../src/queue/workerLease.js";
import { ImageIndex } from "../../src/storage/imageIndex.js";
import type { ImageStore } from "../../src/storage/imageStore.js";
import { LocalImageStore } from "../../src/storage/local.js";
import { buildSidecar, type ImageSidecar } from "../../src/storage/sidecar.js";
import { StagingArea } from "../../src/storage/staging.js";
import { FakeEngine } from "../helpers/fakeEngine.js";
import { makeRequest } from "../helpers/requests.js";
import { waitUntil } from "../helpers/waitUntil.js";

/** Local storage whose put() fails with the queued errors first (a MinIO outage, a revoked key). */
class FlakyStore implements ImageStore {
  readonly kind = "local";
  readonly failures: unknown[] = [];
  failForever: unknown = null;
  puts = 0;
  beforePut: () => void = () => {};

  constructor(private readonly inner: LocalImageStore) {}

  ensureReady = () => this.inner.ensureReady();
  readSidecar = (key: string) => this.inner.readSidecar(key);
  isPermanentError = (error: unknown) => this.inner.isPermanentError(error);
  storageUri = (key: string) => this.inner.storageUri(key);
  downloadUrl = (key: string) => this.inner.downloadUrl(key);

  async put(key: string, pngPath: string, sidecar: ImageSidecar): Promise<void> {
    this.puts++;
    this.beforePut();
    if (this.failForever) throw this.failForever;
    const failure = this.failures.shift();
    if (failure) throw failure;
    await this.inner.put(key, pngPath, sidecar);
  }
}

const fileError = (code: string) => Object.assign(new Error(`${code}: simulated`), { code });

interface Harness {
  dir: string;
  db: Db;
  jobs: JobStore;
  queue: JobQueue;
  index: ImageIndex;
  local: LocalImageStore;
  store: FlakyStore;
  staging: StagingArea;
  engine: FakeEngine;
  worker: Worker;
}

const harnesses: Harness[] = [];

function setUp(): Harness {
  const dir = mkdtempSync(path.join(tmpdir(), "kitty-worker-"));
  const db = openDatabase(path.join(dir, "kitty.sqlite"));
  const jobs = new JobStore(db);
  const lease = new WorkerLease(db);
  const index = new ImageIndex(db);
  const local = new LocalImageStore(path.join(dir, "files"));
  const store = new FlakyStore(local);
  const staging = new StagingArea(path.join(dir, "staging"));
  const engine = new FakeEngine();
  const worker = new Worker({
    jobs,
    lease,
    engine,
    store,
    index,
    staging,
    keyPrefix: "images/",
    log: pino({ level: "silent" }),
    timing: { backoff: { first: 5, max: 20 }, queuePollMs: 20, cancelPollMs: 10, leaseHeartbeatMs: 40 },
  });
  const harness = { dir, db, jobs, queue: new JobQueue(jobs, lease), index, local, store, staging, engine, worker };
  harnesses.push(harness);
  return harness;
}

afterEach(async () => {
  for (const { worker, db, dir } of harnesses.splice(0)) {
    await worker.stop();
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

const ended = (h: Harness, jobId: string) => h.queue.waitForEnd(jobId, 10_000);
const running = (h: Harness, jobId: string) => waitUntil("the job reports a step", () => (h.jobs.get(jobId)?.progress?.step ?? 0) > 0);

describe("worker: one job's run, with a stand-in engine, the local store and a temp database", () => {
  it("runs a job to done: PNG and sidecar stored, the index holds what storage holds, staging emptied", async () => {
    const h = setUp();
    h.worker.start();
    const { job } = h.queue.enqueue(makeRequest({ prompt: "stored", steps: 3, seed: 77 }));
    expect(await ended(h, job.id)).toMatchObject({ state: "done", attempts: 1, progress: { step: 3, totalSteps: 3 } });
    const image = h.index.byJob(job.id)!;
    const stored = await h.local.readSidecar(image.key);
    expect(stored).toMatchObject({ jobId: job.id, engine: "fake", device: "fake-device", seed: 77, request: { prompt: "stored", model: "m" } });
    expect(image).toMatchObject({ prompt: "stored", seed: 77, metadata: stored });
    expect(existsSync(path.join(h.dir, "files", image.key))).toBe(true);
    // Staging is emptied just after the job is recorded done.
    await waitUntil("staging is empty", () => readdirSync(h.staging.dir).length === 0);
  });

  it("runs strictly one job at a time, oldest first", async () => {
    const h = setUp();
    const ids = ["a", "b", "c", "d"].map((prompt) => h.queue.enqueue(makeRequest({ prompt })).job.id);
    h.worker.start();
    for (const jobId of ids) expect((await ended(h, jobId)).state).toBe("done");
    expect(h.engine.calls.map((request) => request.prompt)).toEqual(["a", "b", "c", "d"]);
    expect(h.engine.maxInFlight).toBe(1);
  });

  it("fails a job with the engine's code and message when the engine refuses it", async () => {
    const h = setUp();
    h.engine.script.push(new EngineJobError("out_of_memory", "cpu ran out of memory at 2048x2048: try a smaller size"));
    h.worker.start();
    const { job } = h.queue.enqueue(makeRequest());
    expect(await ended(h, job.id)).toMatchObject({ state: "failed", error: { code: "out_of_memory", message: expect.stringContaining("try a smaller size") } });
    expect(readdirSync(h.staging.dir)).toEqual([]);
  });

  it("gives a job whose runner crashed one retry, then fails it with the crash's reason", async () => {
    const h = setUp();
    const crash = () => new EngineJobError("runner_crashed", "the diffusers runner stopped (signal SIGKILL)", true);
    h.engine.script.push(crash(), "ok", crash(), crash());
    h.worker.start();
    const retried = h.queue.enqueue(makeRequest({ prompt: "crash once" })).job;
    expect(await ended(h, retried.id)).toMatchObject({ state: "done", attempts: 2 });
    const given = h.queue.enqueue(makeRequest({ prompt: "crash twice" })).job;
    expect(await ended(h, given.id)).toMatchObject({ state: "failed", attempts: 2, error: { code: "runner_crashed" } });
    expect(h.engine.calls).toHaveLength(4);
  });

  it("keeps a job queued, with no attempt counted and a notice saying why, while the engine cannot start", async () => {
    const h = setUp();
    const unavailable = () => new EngineJobError("engine_unavailable", "the runner's Python is missing: run 'npm run setup'", true);
    h.engine.script.push(unavailable(), unavailable(), unavailable());
    h.worker.start();
    const { job } = h.queue.enqueue(makeRequest());
    const notice = await waitUntil("the queue says why it waits", () => h.queue.waitingReason());
    expect(notice).toMatch(/engine is not available: the runner's Python is missing/);
    expect(h.jobs.get(job.id)).toMatchObject({ attempts: 0 });
    expect(await ended(h, job.id)).toMatchObject({ state: "done", attempts: 1 });
    expect(h.queue.waitingReason()).toBeNull();
  });

  it("retries an upload while storage is down, saying so, and finishes once it is back", async () => {
    const h = setUp();
    h.store.failures.push(fileError("ECONNREFUSED"), fileError("ECONNREFUSED"));
    h.worker.start();
    const { job } = h.queue.enqueue(makeRequest());
    expect(await ended(h, job.id)).toMatchObject({ state: "done", attempts: 1 });
    expect(h.store.puts).toBe(3);
    expect(h.queue.waitingReason()).toBeNull();
  });

  it("fails a job storage refuses for good, saying where the finished PNG is kept", async () => {
    const h = setUp();
    h.store.failForever = fileError("EACCES");
    h.worker.start();
    const { job } = h.queue.enqueue(makeRequest());
    const failed = await ended(h, job.id);
    expect(failed).toMatchObject({ state: "failed", error: { code: "storage_refused" } });
    expect(failed.error!.message).toContain(`the image is kept at ${h.staging.pngPath(job.id)}`);
    expect(existsSync(h.staging.pngPath(job.id))).toBe(true);
    expect(h.store.puts).toBe(1);
  });

  it("indexes what an earlier run stored before it died, without generating again", async () => {
    const h = setUp();
    const { job } = h.queue.enqueue(makeRequest({ prompt: "stored earlier" }));
    const key = h.jobs.fixImageKey(job.id, "images/20261128_000000_earlier0.png");
    const png = path.join(h.dir, "earlier.png");
    writeFileSync(png, "png bytes");
    const result = { width: 512, height: 512, seed: 1, family: "sd15", scheduler: "euler_a", device: "mps", modelLoads: 1, stepsRun: 4, timings: { loadSeconds: 1, inferenceSeconds: 2, saveSeconds: 0 }, versions: { torch: "2.15.0" } };
    await h.local.put(key, png, buildSidecar({ key, jobId: job.id, engine: "diffusers" }, job.request, result));
    h.worker.start();
    expect(await ended(h, job.id)).toMatchObject({ state: "done" });
    expect(h.engine.calls).toEqual([]);
    expect(h.index.byJob(job.id)).toMatchObject({ key, metadata: { engine: "diffusers", device: "mps", versions: { torch: "2.15.0" } } });
  });

  it("clears staged files of jobs that ended when it takes the queue, but keeps a PNG storage refused", async () => {
    const h = setUp();
    const ended = (["done", "failed"] as const).map((to) => {
      const { job } = h.queue.enqueue(makeRequest({ prompt: to }));
      h.jobs.takeNext();
      h.jobs.finish(job.id, "running", to, to === "failed" ? { error: { code: "storage_refused", message: "kept" } } : {});
      return job.id;
    });
    await h.staging.prepare();
    for (const jobId of [...ended, "no-such-job"]) writeFileSync(h.staging.pngPath(jobId), "png bytes");
    h.worker.start();
    await waitUntil("staging holds only the refused PNG", async () => (await h.staging.jobIds()).join() === ended[1]);
  });

  it("uploads a PNG an earlier run left in staging instead of generating it again", async () => {
    const h = setUp();
    const { job } = h.queue.enqueue(makeRequest());
    await h.staging.prepare();
    writeFileSync(h.staging.pngPath(job.id), "png bytes");
    await h.staging.saveResult(job.id, { width: 512, height: 512, seed: 1, family: "sdxl", scheduler: "euler", device: "cuda", modelLoads: 1, stepsRun: 4, timings: { loadSeconds: 0, inferenceSeconds: 1, saveSeconds: 0 }, versions: {} });
    h.worker.start();
    expect(await ended(h, job.id)).toMatchObject({ state: "done" });
    expect(h.engine.calls).toEqual([]);
    expect(h.index.byJob(job.id)?.metadata).toMatchObject({ device: "cuda", family: "sdxl" });
  });
});

describe("worker: cancel in every phase", () => {
  it("drops a queued job before the engine sees it", async () => {
    const h = setUp();
    h.engine.script.push("hang");
    h.worker.start();
    const first = h.queue.enqueue(makeRequest({ prompt: "hangs" })).job;
    const second = h.queue.enqueue(makeRequest({ prompt: "dropped" })).job;
    await running(h, first.id);
    expect((await h.queue.cancel(second.id)).state).toBe("cancelled");
    expect((await h.queue.cancel(first.id)).state).toBe("cancelled");
    expect(h.engine.calls.map((request) => request.prompt)).toEqual(["hangs"]);
  });

  it("cancels a job while the engine is still starting; it never runs a step", async () => {
    const h = setUp();
    let ready!: () => void;
    h.engine.ready = new Promise((resolve) => (ready = resolve));
    h.worker.start();
    const { job } = h.queue.enqueue(makeRequest());
    await waitUntil("the engine has the job", () => h.engine.calls.length === 1);
    const cancelling = h.queue.cancel(job.id);
    await waitUntil("the cancel mark is set", () => h.jobs.isCancelRequested(job.id));
    ready();
    expect((await cancelling).state).toBe("cancelled");
    expect(h.jobs.get(job.id)?.progress).toBeNull();
  });

  it("stops a running job at its next step and leaves nothing staged", async () => {
    const h = setUp();
    h.engine.script.push("hang");
    h.worker.start();
    const { job } = h.queue.enqueue(makeRequest());
    await running(h, job.id);
    expect((await h.queue.cancel(job.id)).state).toBe("cancelled");
    expect(readdirSync(h.staging.dir)).toEqual([]);
    expect(h.index.byJob(job.id)).toBeUndefined();
  });

  it("stops a job that waits for storage, storing nothing", async () => {
    const h = setUp();
    h.store.failForever = fileError("ETIMEDOUT");
    h.worker.start();
    const { job } = h.queue.enqueue(makeRequest());
    await waitUntil("the queue says storage is down", () => h.queue.waitingReason()?.includes("storage is unavailable"));
    expect((await h.queue.cancel(job.id)).state).toBe("cancelled");
    expect(readdirSync(h.staging.dir)).toEqual([]);
    expect(existsSync(path.join(h.dir, "files", "images"))).toBe(false);
  });

  it("sees a cancel marked by another process on the same database", async () => {
    const h = setUp();
    h.engine.script.push("hang");
    h.worker.start();
    const { job } = h.queue.enqueue(makeRequest());
    await running(h, job.id);
    const otherDb = openDatabase(path.join(h.dir, "kitty.sqlite"));
    expect(new JobStore(otherDb).requestCancel(job.id)).toBe(true);
    otherDb.close();
    expect(await ended(h, job.id)).toMatchObject({ state: "cancelled" });
  });
});

describe("worker: losing the job to another run, and shutting down", () => {
  it("puts a job back, uncounted, and frees the engine when another process takes the lease mid-job", async () => {
    const h = setUp();
    h.engine.script.push("hang");
    h.worker.start();
    const { job } = h.queue.enqueue(makeRequest());
    await running(h, job.id);
    // Another process took over (this one stalled past the lease's stale limit).
    h.db.prepare(`UPDATE worker_lease SET owner = 'another-process', pid = 1, heartbeat_at = ? WHERE id = 1`).run(Date.now() + 60_000);
    await waitUntil("the job is back in the queue", () => h.jobs.get(job.id)?.state === "queued");
    expect(h.jobs.get(job.id)).toMatchObject({ attempts: 0, progress: null });
    expect(h.engine.releases).toBeGreaterThan(0);
    // It no longer holds the queue: it takes nothing more.
    const later = h.queue.enqueue(makeRequest({ prompt: "not for this process" })).job;
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(h.jobs.get(later.id)?.state).toBe("queued");
    expect(h.engine.calls).toHaveLength(1);
  });

  it("neither finishes nor indexes a job another run took over while this one stored its image", async () => {
    const h = setUp();
    h.worker.start();
    const { job } = h.queue.enqueue(makeRequest());
    // As if this run stalled and a new holder recovered the job and started it again as attempt 2.
    h.store.beforePut = () => h.db.prepare(`UPDATE jobs SET attempts = attempts + 1 WHERE id = ?`).run(job.id);
    await waitUntil("the image is stored", () => h.store.puts === 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(h.jobs.get(job.id)).toMatchObject({ state: "running", attempts: 2 });
    expect(h.index.byJob(job.id)).toBeUndefined();
  });

  it("puts the running job back without counting an attempt when the server stops", async () => {
    const h = setUp();
    h.engine.script.push("hang");
    h.worker.start();
    const { job } = h.queue.enqueue(makeRequest());
    await running(h, job.id);
    await h.worker.stop();
    expect(h.jobs.get(job.id)).toMatchObject({ state: "queued", attempts: 0 });
    expect(h.engine.stopped).toBe(true);
  });
});
