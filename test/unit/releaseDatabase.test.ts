import Database from "better-sqlite3";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MIGRATIONS } from "../../src/db/sqlite/migrations.js";
import { openSqliteQueue, type SqliteQueue } from "../../src/db/sqlite/store.js";
import type { ImageRecord } from "../../src/queue/ports.js";
import { PROJECT_ROOT } from "../helpers/paths.js";
import { ID, JOBS, KEY, LATEST_IMAGES } from "../helpers/releaseJobs.js";

/**
 * "A database made by the current release opens and upgrades": test/fixtures/release-0.2.0.sqlite.sql is a job
 * database the 0.2.0 release (commit 5dba63c) filled with its own code (test/fixtures/make-release-databases.mjs),
 * dumped as text. Loaded into a fresh file and opened with today's openSqliteQueue, it reads back through today's
 * port as the release wrote it, and the queue goes on from where it stood.
 */
const DUMP = readFileSync(path.join(PROJECT_ROOT, "test", "fixtures", "release-0.2.0.sqlite.sql"), "utf8");
/** The release's schema version: its db.ts had 3 migrations. */
const RELEASE_USER_VERSION = 3;

describe("a SQLite job database made by release 0.2.0 (5dba63c), opened with today's code", () => {
  let dir: string;
  let file: string;
  let queue: SqliteQueue;
  let schemaAsLoaded: unknown[];

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "kitty-release-db-"));
    file = path.join(dir, "kitty-images.sqlite");
    const raw = new Database(file);
    raw.exec(DUMP);
    expect(raw.pragma("user_version", { simple: true })).toBe(RELEASE_USER_VERSION);
    schemaAsLoaded = raw.prepare(`SELECT type, name, sql FROM sqlite_master ORDER BY name`).all();
    raw.close();
    queue = openSqliteQueue(file);
  });

  afterEach(() => {
    queue.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("migrates to today's schema version: the release's tables stay as it made them, and the uploads and tasks tables are added", () => {
    queue.close();
    const raw = new Database(file, { readonly: true });
    expect(MIGRATIONS.length).toBeGreaterThan(RELEASE_USER_VERSION);
    expect(raw.pragma("user_version", { simple: true })).toBe(MIGRATIONS.length);
    const schema = raw.prepare(`SELECT type, name, sql FROM sqlite_master ORDER BY name`).all() as Array<{ name: string }>;
    const added = (entry: { name: string }) => entry.name.includes("uploads") || entry.name.includes("tasks");
    expect(schema.filter((entry) => !added(entry))).toEqual(schemaAsLoaded);
    expect(schema.filter(added).map((entry) => entry.name)).toEqual(
      ["uploads", "uploads_newest", "sqlite_autoindex_uploads_1", "tasks", "tasks_newest", "tasks_expiry", "sqlite_autoindex_tasks_1"].sort(),
    );
    expect((raw.prepare(`SELECT COUNT(*) AS n FROM jobs`).get() as { n: number }).n).toBe(9);
    raw.close();
    queue = openSqliteQueue(file); // for afterEach
  });

  it("reads every job back with its state, attempts, progress, cancel mark, error and times", async () => {
    for (const expected of JOBS) {
      const job = await queue.jobs.get(expected.id);
      expect(job, expected.id).toMatchObject(expected);
    }
    expect(await queue.jobs.countByState()).toEqual({ queued: 2, running: 3, done: 2, failed: 1, cancelled: 1 });
    expect(await queue.jobs.isCancelRequested(ID.runningCancel)).toBe(true);
    expect(await queue.jobs.isCancelRequested(ID.running)).toBe(false);
  });

  it("reads the stored requests as today's GenerationRequest: model, batch count, refiner, LoRAs, start image", async () => {
    const single = (await queue.jobs.get(ID.doneSingle))!.request;
    expect(single).toMatchObject({ prompt: "a lighthouse at dusk, oil painting", width: 1024, height: 1024, steps: 30, cfgScale: 6.5, seed: 1234, scheduler: "euler_a" });
    expect(single.model).toEqual({ name: "sdxl-base", path: "/models/sdxl-base", refinerPath: "/models/sdxl-refiner", engine: "diffusers", family: "sdxl" });
    expect(single.refiner).toMatchObject({ mode: "ensemble", switchAt: 0.8 });
    expect((await queue.jobs.get(ID.doneBatch))!.request).toMatchObject({ count: 2, seed: 42, model: { name: "sd15", configPath: "/models/sd15-config" } });
    expect((await queue.jobs.get(ID.queued))!.request.initImage).toEqual({ key: KEY.single, strength: 0.6 });
    expect((await queue.jobs.get(ID.queuedLora))!.request.loras).toEqual([{ name: "detail-tweaker", path: "/models/loras/detail-tweaker.safetensors", weight: 0.8 }]);
  });

  it("lists the running jobs then the queue in order, with queued positions", async () => {
    expect((await queue.jobs.active(10)).map((job) => job.id)).toEqual([ID.running, ID.runningCancel, ID.runningRetried, ID.queued, ID.queuedLora]);
    expect(await queue.jobs.position((await queue.jobs.get(ID.queued))!)).toBe(1);
    expect(await queue.jobs.position((await queue.jobs.get(ID.queuedLora))!)).toBe(2);
  });

  it("lists the images newest first with their job, pages them, and finds a done job's images", async () => {
    expect(await queue.images.count()).toBe(3);
    const all = await queue.images.latest(10);
    expect(all.nextCursor).toBeNull();
    expect(all.images.map(({ index, key, jobId, seed, createdAt }) => ({ index, key, jobId, seed, createdAt }))).toEqual(LATEST_IMAGES);
    expect(all.images[0]).toMatchObject({ prompt: "a red fox in fresh snow", model: "sd15", width: 512, height: 768 });
    expect(all.images[0]!.metadata).toMatchObject({ key: KEY.batchSecond, engine: "diffusers", family: "sd15", batch: { index: 1, count: 2 }, pngBytes: 1_400_001 });

    const first = await queue.images.latest(2);
    expect(first.images.map((image) => image.key)).toEqual([KEY.batchSecond, KEY.batchFirst]);
    expect(first.nextCursor).not.toBeNull();
    const second = await queue.images.latest(2, first.nextCursor!);
    expect(second.images.map(({ index, key }) => ({ index, key }))).toEqual([{ index: 3, key: KEY.single }]);
    expect(second.nextCursor).toBeNull();

    expect((await queue.images.ofJob(ID.doneBatch)).map((image) => image.key)).toEqual([KEY.batchFirst, KEY.batchSecond]);
    const [single] = await queue.images.ofJob(ID.doneSingle);
    expect(single).toMatchObject({ key: KEY.single, prompt: "a lighthouse at dusk, oil painting", model: "sdxl-base", width: 1024, height: 1024 });
    expect(single!.metadata).toMatchObject({ jobId: ID.doneSingle, request: { model: "sdxl-base", seed: 1234 }, timings: { inferenceSeconds: 6.8 } });
    expect(await queue.images.ofJob(ID.failed)).toEqual([]);
    expect((await queue.images.atIndex(3))?.key).toBe(KEY.single);
    expect((await queue.images.byKey(KEY.batchFirst))?.jobId).toBe(ID.doneBatch);
    expect((await queue.images.byReference(`file:///data/${KEY.batchSecond}`, "images/"))?.key).toBe(KEY.batchSecond);
  });

  it("reads the release's lease holder and notice, and takes the stale lease over", async () => {
    expect(await queue.lease.holder()).toEqual({ pid: 4242, notice: "storage is unavailable (connect ECONNREFUSED 127.0.0.1:9000); retrying" });
    // Its heartbeat (2026-01-15) is long stale and its host is another: today's server takes the queue over.
    expect(await queue.lease.tryAcquire()).toBe(true);
    expect(await queue.lease.holder()).toEqual({ pid: process.pid, notice: null });
  });

  it("takes the queued job, completes it with its images, and queues new jobs after the release's", async () => {
    const taken = await queue.jobs.takeNext();
    expect(taken).toMatchObject({ id: ID.queued, state: "running", attempts: 1 });
    const key = await queue.jobs.fixImageKey(ID.queued, "images/20260201_120000_a0000008.png");
    expect(key).toBe("images/20260201_120000_a0000008.png");
    const record: ImageRecord = { key, jobId: ID.queued, createdAt: new Date().toISOString(), prompt: taken!.request.prompt, model: "sd15", width: 512, height: 512, seed: 11, metadata: { key } };
    await queue.jobs.completeWithImages(ID.queued, taken!.attempts, [record]);
    expect(await queue.jobs.get(ID.queued)).toMatchObject({ state: "done", attempts: 1, imageKey: key, error: null });
    expect(await queue.images.count()).toBe(4);
    expect((await queue.images.latest(1)).images[0]).toMatchObject({ index: 1, key, jobId: ID.queued });
    expect((await queue.images.ofJob(ID.queued)).map((image) => image.key)).toEqual([key]);

    const added = await queue.jobs.enqueue({ ...taken!.request, prompt: "a new job on an old queue" });
    // AUTOINCREMENT goes on from the release's sqlite_sequence: FIFO order holds across the upgrade.
    expect(added).toMatchObject({ seq: 10, state: "queued", attempts: 0 });
    expect(await queue.jobs.position(added)).toBe(2);
    expect((await queue.jobs.takeNext())?.id).toBe(ID.queuedLora);
    expect((await queue.jobs.takeNext())?.id).toBe(added.id);
    expect(await queue.jobs.takeNext()).toBeUndefined();
  });

  it("recovers the runs the release left cut off as the release would: resumed, cancelled, failed as interrupted", async () => {
    expect(await queue.lease.tryAcquire()).toBe(true);
    expect(await queue.jobs.recoverInterrupted()).toEqual({ resumed: [ID.running], failed: [ID.runningRetried] });
    expect(await queue.jobs.get(ID.running)).toMatchObject({ state: "queued", attempts: 1, progress: null, startedAt: null, finishedAt: null, error: null });
    expect(await queue.jobs.get(ID.runningCancel)).toMatchObject({ state: "cancelled", attempts: 1, cancelRequested: true, error: null });
    expect((await queue.jobs.get(ID.runningCancel))!.finishedAt).not.toBeNull();
    expect(await queue.jobs.get(ID.runningRetried)).toMatchObject({
      state: "failed",
      attempts: 2,
      error: { code: "interrupted", message: "the server stopped while this job ran, 2 times; not retried again" },
    });
    expect(await queue.jobs.countByState()).toEqual({ queued: 3, running: 0, done: 2, failed: 2, cancelled: 2 });
    // The resumed job keeps its place in line (seq 5), ahead of the release's queued ones, and gets its retry.
    const retry = await queue.jobs.takeNext({ leaseOwner: queue.lease.owner });
    expect(retry).toMatchObject({ id: ID.running, seq: 5, attempts: 2, state: "running" });
    expect((await queue.jobs.takeNext({ leaseOwner: queue.lease.owner }))?.id).toBe(ID.queued);
  });
});
