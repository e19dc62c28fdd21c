import { existsSync, readdirSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../../src/db/sqlite/database.js";
import { SqliteImageIndex } from "../../src/db/sqlite/images.js";
import { SqliteJobStore } from "../../src/db/sqlite/jobs.js";
import { makeRequest } from "../helpers/requests.js";
import { waitUntil } from "../helpers/waitUntil.js";
import { fileError, holdIndexing, setUpWorker } from "../helpers/workerHarness.js";

describe("worker: cancel in every phase", () => {
  it("drops a queued job before the engine sees it", async () => {
    const h = setUpWorker();
    h.engine.script.push("hang");
    h.worker.start();
    const first = await h.jobs.enqueue(makeRequest({ prompt: "hangs" }));
    const second = await h.jobs.enqueue(makeRequest({ prompt: "dropped" }));
    await h.running(first.id);
    expect((await h.queue.cancel(second.id)).state).toBe("cancelled");
    expect((await h.queue.cancel(first.id)).state).toBe("cancelled");
    expect(h.engine.calls.map((request) => request.prompt)).toEqual(["hangs"]);
  });

  it("cancels a job while the engine is still starting; it never runs a step", async () => {
    const h = setUpWorker();
    let ready!: () => void;
    h.engine.ready = new Promise((resolve) => (ready = resolve));
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    await waitUntil("the engine has the job", () => h.engine.calls.length === 1);
    const cancelling = h.queue.cancel(job.id);
    await waitUntil("the cancel is marked", async () => (await h.jobs.get(job.id))?.cancelRequested);
    ready();
    expect((await cancelling).state).toBe("cancelled");
    expect((await h.jobs.get(job.id))?.progress).toBeNull();
  });

  it("stops a running job at its next step and leaves nothing staged", async () => {
    const h = setUpWorker();
    h.engine.script.push("hang");
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    await h.running(job.id);
    expect((await h.queue.cancel(job.id)).state).toBe("cancelled");
    expect(readdirSync(h.staging.dir)).toEqual([]);
    expect(await h.index.ofJob(job.id)).toEqual([]);
  });

  it("stops a job that waits for storage, storing nothing, and drops the storage notice", async () => {
    const h = setUpWorker();
    h.store.failForever = fileError("ETIMEDOUT");
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    await waitUntil("the queue says storage is down", async () => (await h.queue.waitingReason(job))?.includes("storage is unavailable"));
    expect((await h.queue.cancel(job.id)).state).toBe("cancelled");
    expect(readdirSync(h.staging.dir)).toEqual([]);
    expect(await h.index.ofJob(job.id)).toEqual([]);
    expect(await h.queue.waitingReason(job)).toBeNull();
  });

  it("finishes a job whose image is stored even when a cancel comes while it is being recorded", async () => {
    const h = setUpWorker();
    const indexing = holdIndexing(h);
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    await waitUntil("recording the job waits for the database", () => indexing.refusals() >= 2);
    const cancelling = h.queue.cancel(job.id);
    await waitUntil("the worker saw the cancel mark", () => indexing.refusals() >= 6);
    indexing.release();
    expect((await cancelling).state).toBe("done");
    expect((await h.index.ofJob(job.id))[0]).toBeDefined();
  });

  it("sees a cancel marked by another process on the same database", async () => {
    const h = setUpWorker();
    h.engine.script.push("hang");
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    await h.running(job.id);
    const otherDb = openDatabase(path.join(h.dir, "kitty.sqlite"));
    expect(await new SqliteJobStore(otherDb, new SqliteImageIndex(otherDb)).requestCancel(job.id)).toBe(true);
    otherDb.close();
    expect(await h.ended(job.id)).toMatchObject({ state: "cancelled" });
  });
});

describe("worker: losing the job to another run, and shutting down", () => {
  it("puts a job back, uncounted, and frees the engine when another process takes the lease mid-job", async () => {
    const h = setUpWorker();
    h.engine.script.push("hang");
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    await h.running(job.id);
    // Another process took over (this one stalled past the lease's stale limit).
    h.db.prepare(`UPDATE worker_lease SET owner = 'another-process', pid = 1, heartbeat_at = ? WHERE id = 1`).run(Date.now() + 60_000);
    await waitUntil("the job is back in the queue", async () => (await h.jobs.get(job.id))?.state === "queued");
    expect(await h.jobs.get(job.id)).toMatchObject({ attempts: 0, progress: null });
    expect(h.engine.releases).toBeGreaterThan(0);
    // It no longer holds the queue: over several heartbeats (40 ms each) it takes nothing more.
    const later = await h.jobs.enqueue(makeRequest({ prompt: "not for this process" }));
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await h.jobs.get(later.id))?.state).toBe("queued");
    expect(h.engine.calls).toHaveLength(1);
  });

  it("neither finishes nor indexes a job another run took over while this one stored its image", async () => {
    const h = setUpWorker();
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    // As if this run stalled and a new holder recovered the job and started it again as attempt 2.
    h.store.beforePut = () => {
      h.db.prepare(`UPDATE jobs SET attempts = attempts + 1 WHERE id = ?`).run(job.id);
      h.store.beforePut = () => {};
    };
    // One job at a time: once the next job is done, this run has settled the first.
    const next = await h.jobs.enqueue(makeRequest({ prompt: "next" }));
    expect(await h.ended(next.id)).toMatchObject({ state: "done" });
    expect(await h.jobs.get(job.id)).toMatchObject({ state: "running", attempts: 2 });
    expect(await h.index.ofJob(job.id)).toEqual([]);
  });

  it("puts a job back when the database will not take how it ended, rather than leave it running with no run", async () => {
    const h = setUpWorker();
    h.db.pragma("busy_timeout = 20");
    // Another process holds the write lock from the upload on: storage refuses, and recording that fails too.
    const other = openDatabase(path.join(h.dir, "kitty.sqlite"));
    h.store.failForever = fileError("EACCES");
    let locked = false;
    h.store.beforePut = () => {
      if (!locked) other.exec("BEGIN IMMEDIATE");
      locked = true;
    };
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    await waitUntil("storage was tried under the lock", () => locked);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await h.jobs.get(job.id))?.state, "nothing could be recorded under the lock").toBe("running");
    h.store.failForever = null;
    other.exec("ROLLBACK");
    other.close();
    // Put back once the database answered, uncounted, and run again: done, once.
    expect(await h.ended(job.id)).toMatchObject({ state: "done", attempts: 1 });
    expect(await h.index.ofJob(job.id)).toHaveLength(1);
  });

  it("puts the running job back without counting an attempt when the server stops", async () => {
    const h = setUpWorker();
    h.engine.script.push("hang");
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    await h.running(job.id);
    await h.worker.stop();
    expect(await h.jobs.get(job.id)).toMatchObject({ state: "queued", attempts: 0 });
    expect(h.engine.stopped).toBe(true);
  });

  it("keeps the finished PNG and puts the job back when the server stops while storage is down", async () => {
    const h = setUpWorker();
    h.store.failForever = fileError("ECONNREFUSED");
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    await waitUntil("the queue says storage is down", () => h.queue.waitingReason(job));
    await h.worker.stop();
    expect(await h.jobs.get(job.id)).toMatchObject({ state: "queued", attempts: 0 });
    expect(await h.staging.finished(job.id, 1)).toMatchObject({ device: "fake-device" });
  });

  it("leaves a job to the next start when a cancel and then a shutdown come while it is being recorded", async () => {
    const h = setUpWorker();
    const indexing = holdIndexing(h);
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    await waitUntil("recording the job waits for the database", () => indexing.refusals() >= 2);
    void h.queue.cancel(job.id);
    await waitUntil("the worker saw the cancel mark", () => indexing.refusals() >= 6);
    await h.worker.stop();
    // Not this process's to end any more: the next start finds the cancel mark and ends it there.
    expect(await h.jobs.get(job.id)).toMatchObject({ state: "queued", attempts: 0, cancelRequested: true });
    expect(existsSync(h.staging.pngPath(job.id))).toBe(true);
  });
});
