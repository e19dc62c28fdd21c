import { readFileSync } from "node:fs";
import path from "node:path";
import pg from "pg";
import pino from "pino";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { PG_MIGRATIONS } from "../../src/db/postgres/migrations.js";
import { openPostgresQueue, type PostgresQueue } from "../../src/db/postgres/store.js";
import type { ImageRecord } from "../../src/queue/ports.js";
import { PROJECT_ROOT } from "../helpers/paths.js";
import { ID, JOBS, KEY, LATEST_IMAGES } from "../helpers/releaseJobs.js";
import { startPostgres, whyNoPostgres, type PostgresServer } from "../helpers/postgres.js";

/**
 * "A database made by the current release opens and upgrades", on Postgres: test/fixtures/release-0.2.0.postgres.sql
 * is a shared queue the 0.2.0 release (commit 5dba63c) filled with its own code (test/fixtures/make-release-databases.mjs),
 * dumped by pg_dump. Loaded into a fresh database and opened with today's openPostgresQueue (which migrates), it
 * reads back through today's port and registry as the release wrote it, and the queue goes on from where it stood.
 */
const noPostgres = whyNoPostgres();
if (noPostgres) console.warn(`releaseDatabase (Postgres): skipped, ${noPostgres}`);
const quiet = pino({ level: "silent" });
/** The release's schema version: its pgJobStore.ts had 2 migrations. */
const RELEASE_SCHEMA_VERSION = 2;
/**
 * pg_dump's text as plain SQL: its `\restrict` / `\unrestrict` lines are psql meta-commands (psql -f runs them; a
 * server does not know them). Everything else, `SET` and `set_config('search_path', '', false)` included, runs as is.
 */
const DUMP_SQL = readFileSync(path.join(PROJECT_ROOT, "test", "fixtures", "release-0.2.0.postgres.sql"), "utf8")
  .split("\n")
  .filter((line) => !/^\\(un)?restrict\b/.test(line))
  .join("\n");

/** The schema as the catalog holds it: columns with types and defaults, indexes, constraints. */
async function schemaOf(pool: pg.Pool): Promise<unknown[]> {
  const columns = await pool.query(
    `SELECT table_name, column_name, data_type, column_default, is_nullable, is_identity, collation_name
     FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, column_name`,
  );
  const indexes = await pool.query(`SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname`);
  const constraints = await pool.query(
    `SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY conname`,
  );
  return [...columns.rows, ...indexes.rows, ...constraints.rows];
}

describe.skipIf(noPostgres !== null)("a Postgres job database made by release 0.2.0 (5dba63c), opened with today's code", () => {
  let server: PostgresServer;
  let admin: pg.Client;
  let databases = 0;
  let database: string;
  let queue: PostgresQueue;
  /** The queue this test opened, if it got that far (a failed beforeEach leaves the last test's, already closed). */
  let opened: PostgresQueue | null = null;
  let schemaAsLoaded: unknown[];

  beforeAll(async () => {
    server = await startPostgres();
    admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
  });
  afterAll(async () => {
    await admin?.end();
    await server?.stop();
  });

  beforeEach(async () => {
    database = `release_${++databases}`;
    await admin.query(`CREATE DATABASE ${database}`);
    const url = server.url.replace(/\/[^/]+$/, `/${database}`);
    // Its own connection: the dump empties search_path for the session that runs it.
    const loader = new pg.Client({ connectionString: url });
    await loader.connect();
    try {
      await loader.query(DUMP_SQL);
    } finally {
      await loader.end();
    }
    const before = new pg.Pool({ connectionString: url, max: 1 });
    try {
      expect((await before.query(`SELECT version FROM kitty_schema`)).rows).toEqual([{ version: RELEASE_SCHEMA_VERSION }]);
      schemaAsLoaded = await schemaOf(before);
    } finally {
      await before.end();
    }
    queue = await openPostgresQueue(url, quiet);
    opened = queue;
  });
  afterEach(async () => {
    await opened?.pool.end();
    opened = null;
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
  });

  it("migrates to today's version: the release's tables stay as it made them, and the uploads and tasks tables are added", async () => {
    expect(PG_MIGRATIONS.length).toBeGreaterThan(RELEASE_SCHEMA_VERSION);
    expect((await queue.pool.query(`SELECT version FROM kitty_schema`)).rows).toEqual([{ version: PG_MIGRATIONS.length }]);
    const notUploads = (entry: Record<string, string>) => !Object.values(entry).some((value) => typeof value === "string" && (value.startsWith("uploads") || value.startsWith("tasks")));
    const schema = (await schemaOf(queue.pool)) as Array<Record<string, string>>;
    expect(schema.filter(notUploads)).toEqual(schemaAsLoaded);
    expect(schema.filter((entry) => entry.table_name === "uploads").map((entry) => entry.column_name)).toEqual(["created_at", "height", "key", "metadata", "width"]);
    expect(schema.filter((entry) => entry.table_name === "tasks").map((entry) => entry.column_name)).toEqual(["cancelled", "created_at", "expires_at", "task_id", "tool", "ttl_ms"]);
    expect((await queue.pool.query(`SELECT count(*)::int AS n FROM jobs`)).rows[0].n).toBe(9);
  });

  it("reads every job back with its state, attempts, progress, cancel mark, error and times", async () => {
    for (const expected of JOBS) {
      const job = await queue.jobs.get(expected.id);
      expect(job, expected.id).toMatchObject(expected);
    }
    expect(await queue.jobs.countByState()).toEqual({ queued: 2, running: 3, done: 2, failed: 1, cancelled: 1 });
    expect(await queue.jobs.isCancelRequested(ID.runningCancel)).toBe(true);
    expect(await queue.jobs.isCancelRequested(ID.running)).toBe(false);
    const single = (await queue.jobs.get(ID.doneSingle))!.request;
    expect(single.model).toEqual({ name: "sdxl-base", path: "/models/sdxl-base", refinerPath: "/models/sdxl-refiner", engine: "diffusers", family: "sdxl" });
    expect(single).toMatchObject({ width: 1024, seed: 1234, cfgScale: 6.5, refiner: { mode: "ensemble" } });
    expect((await queue.jobs.get(ID.doneBatch))!.request).toMatchObject({ count: 2, seed: 42, model: { name: "sd15" } });
    expect((await queue.jobs.get(ID.queued))!.request.initImage).toEqual({ key: KEY.single, strength: 0.6 });
    expect((await queue.jobs.get(ID.queuedLora))!.request.loras).toEqual([{ name: "detail-tweaker", path: "/models/loras/detail-tweaker.safetensors", weight: 0.8 }]);
    expect((await queue.jobs.active(10)).map((job) => job.id)).toEqual([ID.running, ID.runningCancel, ID.runningRetried, ID.queued, ID.queuedLora]);
    expect(await queue.jobs.position((await queue.jobs.get(ID.queuedLora))!)).toBe(2);
  });

  it("lists the images newest first with their job, pages them, and finds a done job's images", async () => {
    expect(await queue.images.count()).toBe(3);
    const all = await queue.images.latest(10);
    expect(all.nextCursor).toBeNull();
    expect(all.images.map(({ index, key, jobId, seed, createdAt }) => ({ index, key, jobId, seed, createdAt }))).toEqual(LATEST_IMAGES);
    expect(all.images[0]).toMatchObject({ prompt: "a red fox in fresh snow", model: "sd15", width: 512, height: 768 });
    expect(all.images[0]!.metadata).toMatchObject({ key: KEY.batchSecond, family: "sd15", batch: { index: 1, count: 2 }, pngBytes: 1_400_001 });
    const first = await queue.images.latest(2);
    const second = await queue.images.latest(2, first.nextCursor!);
    expect(second.images.map(({ index, key }) => ({ index, key }))).toEqual([{ index: 3, key: KEY.single }]);
    expect((await queue.images.ofJob(ID.doneBatch)).map((image) => image.key)).toEqual([KEY.batchFirst, KEY.batchSecond]);
    expect((await queue.images.ofJob(ID.doneSingle)).map((image) => image.key)).toEqual([KEY.single]);
    expect(await queue.images.ofJob(ID.failed)).toEqual([]);
    expect((await queue.images.atIndex(3))?.key).toBe(KEY.single);
    expect((await queue.images.byKey(KEY.single))?.metadata).toMatchObject({ jobId: ID.doneSingle, request: { model: "sdxl-base" } });
  });

  it("shows the release's workers in the registry with their models, model info, LoRAs, device, notice and running job", async () => {
    const workers = await queue.registry.workers(1_000);
    expect(workers.map(({ heartbeatAt: _heartbeatAt, ...worker }) => worker)).toEqual([
      {
        id: "gpu-a",
        host: "render-01",
        models: ["sdxl-base", "sd15"],
        modelInfo: { "sdxl-base": { engine: "diffusers", family: "sdxl", refiner: true }, sd15: { engine: "diffusers", family: "sd15", refiner: false } },
        loras: [{ name: "detail-tweaker", family: "sdxl" }],
        device: "cuda:0 (NVIDIA RTX 4090)",
        notice: "storage is unavailable (connect ECONNREFUSED 10.0.0.5:9000); retrying",
        alive: false, // its heartbeat is from when the fixture was made
        runningJobId: ID.running,
      },
      {
        id: "gpu-b",
        host: "render-02",
        models: ["sd15"],
        modelInfo: { sd15: { family: "sd15", refiner: false } },
        loras: [],
        device: "cuda:0 (NVIDIA RTX 3060)",
        notice: null,
        alive: false,
        runningJobId: ID.runningCancel,
      },
    ]);
    expect(Number.isNaN(Date.parse(workers[0]!.heartbeatAt))).toBe(false);
    // Within a window that reaches back to the fixture's making, both count as alive; a heartbeat makes one alive now.
    expect((await queue.registry.workers(10 * 365 * 24 * 3600 * 1000)).map((worker) => worker.alive)).toEqual([true, true]);
    expect(await queue.registry.heartbeat("gpu-b")).toBe(true);
    expect((await queue.registry.workers(60_000)).map((worker) => [worker.id, worker.alive, worker.device])).toEqual([
      ["gpu-a", false, "cuda:0 (NVIDIA RTX 4090)"],
      ["gpu-b", true, "cuda:0 (NVIDIA RTX 3060)"],
    ]);
  });

  it("routes the queued jobs by the release's model column and request, completes one with its images, and queues new jobs after", async () => {
    const sd15Only = { workerId: "gpu-b", models: ["sd15"], can: { refiners: [], loras: [] } };
    const taken = await queue.jobs.takeNext(sd15Only);
    expect(taken).toMatchObject({ id: ID.queued, state: "running", attempts: 1 });
    // The other queued job is an SDXL job with a refiner and a LoRA: not for gpu-b, taken by gpu-a.
    expect(await queue.jobs.takeNext(sd15Only)).toBeUndefined();
    const lora = await queue.jobs.takeNext({ workerId: "gpu-a", models: ["sdxl-base", "sd15"], can: { refiners: ["sdxl-base"], loras: ["detail-tweaker"] } });
    expect(lora?.id).toBe(ID.queuedLora);

    const key = await queue.jobs.fixImageKey(ID.queued, "images/20260201_120000_a0000008.png");
    const record: ImageRecord = { key, jobId: ID.queued, createdAt: new Date().toISOString(), prompt: taken!.request.prompt, model: "sd15", width: 512, height: 512, seed: 11, metadata: { key } };
    await queue.jobs.completeWithImages(ID.queued, taken!.attempts, [record]);
    expect(await queue.jobs.get(ID.queued)).toMatchObject({ state: "done", imageKey: key, error: null });
    expect(await queue.images.count()).toBe(4);
    expect((await queue.images.latest(1)).images[0]).toMatchObject({ index: 1, key, jobId: ID.queued });

    const added = await queue.jobs.enqueue({ ...taken!.request, prompt: "a new job on an old queue" });
    // The identity sequence goes on from the release's setval: FIFO order holds across the upgrade.
    expect(added).toMatchObject({ seq: 10, state: "queued" });
    expect(await queue.jobs.position(added)).toBe(1);
    expect((await queue.jobs.takeNext(sd15Only))?.id).toBe(added.id);
  });

  it("recovers the runs whose workers went silent as the release would: resumed, cancelled, failed as interrupted", async () => {
    const recovered = await queue.jobs.recoverInterrupted(60_000);
    expect(recovered).toEqual({ resumed: [ID.running], failed: [ID.runningRetried] });
    expect(await queue.jobs.get(ID.running)).toMatchObject({ state: "queued", attempts: 1, progress: null, startedAt: null, finishedAt: null, error: null });
    expect(await queue.jobs.get(ID.runningCancel)).toMatchObject({ state: "cancelled", cancelRequested: true, error: null });
    expect(await queue.jobs.get(ID.runningRetried)).toMatchObject({
      state: "failed",
      attempts: 2,
      error: { code: "interrupted", message: "the worker running this job stopped, 2 times; not retried again" },
    });
    expect(await queue.jobs.countByState()).toEqual({ queued: 3, running: 0, done: 2, failed: 2, cancelled: 2 });
    expect((await queue.registry.workers(60_000)).map((worker) => worker.runningJobId)).toEqual([null, null]);
    // The resumed job keeps its place (seq 5), ahead of the release's queued ones.
    expect(await queue.jobs.takeNext({ workerId: "gpu-a" })).toMatchObject({ id: ID.running, seq: 5, attempts: 2 });
  });
});
