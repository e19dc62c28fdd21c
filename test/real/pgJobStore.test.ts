import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import pino from "pino";
import { EngineJobError } from "../../src/engines/engine.js";
import { PgJobListener } from "../../src/db/postgres/listener.js";
import { createPgPool } from "../../src/db/postgres/pool.js";
import { JOBS_CHANNEL, PgJobStore } from "../../src/db/postgres/jobs.js";
import { migratePostgres, PG_MIGRATIONS } from "../../src/db/postgres/migrations.js";
import { PgWorkerRegistry } from "../../src/db/postgres/registry.js";
import { JobEvents } from "../../src/queue/jobEvents.js";
import { JobQueue } from "../../src/queue/jobQueue.js";
import { SharedJobSource } from "../../src/queue/jobSources.js";
import { NO_OBSERVER, runJob } from "../../src/queue/runJob.js";
import { reindex } from "../../src/queue/reindex.js";
import { Worker } from "../../src/queue/worker.js";
import { sharedWaitingReason, WorkerPresence } from "../../src/queue/workerPresence.js";
import { LocalImageStore } from "../../src/storage/local.js";
import { buildSidecar } from "../../src/images/sidecar.js";
import { PgImageIndex } from "../../src/db/postgres/images.js";
import { StagingArea } from "../../src/images/staging.js";
import { FakeEngine } from "../helpers/fakeEngine.js";
import { FlakyStore } from "../helpers/workerHarness.js";
import { imageIndexContract } from "../contracts/imageIndexContract.js";
import { taskIndexContract } from "../contracts/taskIndexContract.js";
import { PgTaskIndex } from "../../src/db/postgres/tasks.js";
import { jobStoreContract, type StoreUnderTest } from "../contracts/jobStoreContract.js";
import { startPostgres, whyNoPostgres, type PostgresServer } from "../helpers/postgres.js";
import { makePng } from "../helpers/png.js";
import { makeRequest } from "../helpers/requests.js";
import { waitUntil } from "../helpers/waitUntil.js";

/** The Postgres job store (scale-out) on a throwaway cluster: the same contract as SQLite's, then what many workers need. */
const noPostgres = whyNoPostgres();
const quiet = pino({ level: "silent" });
/** The port on one pool: jobs, the images they index, and the worker registry. */
const portOn = (pool: pg.Pool) => {
  const images = new PgImageIndex(pool);
  return { jobs: new PgJobStore(pool, images), images, registry: new PgWorkerRegistry(pool) };
};
if (noPostgres) console.warn(`pgJobStore: skipped, ${noPostgres}`);

describe.skipIf(noPostgres !== null)("PgJobStore and PgImageIndex on a real Postgres", () => {
  let server: PostgresServer;
  let pool: pg.Pool;
  let store: StoreUnderTest & { jobs: PgJobStore; registry: PgWorkerRegistry };

  beforeAll(async () => {
    server = await startPostgres();
    pool = createPgPool(server.url, quiet);
    await migratePostgres(pool);
  });
  afterAll(async () => {
    await pool?.end();
    await server?.stop();
  });
  beforeEach(async () => {
    await pool.query(`TRUNCATE images, jobs, workers, tasks RESTART IDENTITY CASCADE`);
    store = portOn(pool);
  });

  jobStoreContract("Postgres", () => store);
  imageIndexContract("Postgres", () => ({ index: new PgImageIndex(pool), newJob: async () => (await store.jobs.enqueue(makeRequest())).id }));
  taskIndexContract("Postgres", () => new PgTaskIndex(pool));

  it("applies its migrations once when several processes start together, and again is a no-op", async () => {
    const pools = [1, 2, 3].map(() => createPgPool(server.url, quiet, 1));
    try {
      await Promise.all(pools.map((each) => migratePostgres(each)));
      await migratePostgres(pool);
      expect((await pool.query(`SELECT version FROM kitty_schema`)).rows).toEqual([{ version: PG_MIGRATIONS.length }]);
    } finally {
      await Promise.all(pools.map((each) => each.end()));
    }
  });

  it("hands each of 200 jobs to exactly one of four workers taking at once (FOR UPDATE SKIP LOCKED)", async () => {
    const ids = [];
    for (let n = 0; n < 200; n++) ids.push((await store.jobs.enqueue(makeRequest({ prompt: `job ${n}` }))).id);
    const pools = [1, 2, 3, 4].map(() => createPgPool(server.url, quiet, 1));
    try {
      const perWorker = await Promise.all(
        pools.map(async (each, worker) => {
          const { jobs } = portOn(each);
          const taken: string[] = [];
          for (let job; (job = await jobs.takeNext({ workerId: `worker-${worker}` })); ) taken.push(job.id);
          return taken;
        }),
      );
      expect(perWorker.flat().sort()).toEqual([...ids].sort());
      expect(perWorker.filter((taken) => taken.length > 0).length).toBeGreaterThan(1);
    } finally {
      await Promise.all(pools.map((each) => each.end()));
    }
  });

  it("routes by model: a worker takes, oldest first, only the jobs whose model it has", async () => {
    const { jobs } = store;
    const sdxl = await jobs.enqueue(makeRequest({ prompt: "big", model: { name: "sdxl", path: "/m/sdxl", refinerPath: null } }));
    const sd15 = await jobs.enqueue(makeRequest({ prompt: "small", model: { name: "sd15", path: "/m/sd15", refinerPath: null } }));
    const sd15Again = await jobs.enqueue(makeRequest({ prompt: "small again", model: { name: "sd15", path: "/m/sd15", refinerPath: null } }));
    expect((await jobs.takeNext({ workerId: "mac", models: ["sd15"] }))?.id).toBe(sd15.id);
    expect((await jobs.takeNext({ workerId: "mac", models: ["sd15"] }))?.id).toBe(sd15Again.id);
    expect(await jobs.takeNext({ workerId: "mac", models: ["sd15"] })).toBeUndefined();
    expect((await jobs.takeNext({ workerId: "cuda-box", models: ["sd15", "sdxl"] }))?.id).toBe(sdxl.id);
  });

  it("keeps a refiner pass and LoRAs away from a worker without them, and hands them to one that has them", async () => {
    const { jobs } = store;
    const sdxl = { name: "sdxl", path: "/m/sdxl", refinerPath: null };
    const refined = await jobs.enqueue(makeRequest({ prompt: "refined", model: { ...sdxl, refinerPath: "/m/refiner" } }));
    const withLora = await jobs.enqueue(makeRequest({ prompt: "detailed", model: sdxl, loras: [{ name: "detail", path: "", weight: 0.8 }] }));
    const plain = await jobs.enqueue(makeRequest({ prompt: "plain", model: sdxl }));
    // The base model alone, no refiner, no LoRAs: it skips both and takes the plain job behind them.
    const bare = { refiners: [], loras: [] };
    expect((await jobs.takeNext({ workerId: "bare-box", models: ["sdxl"], can: bare }))?.id).toBe(plain.id);
    expect(await jobs.takeNext({ workerId: "bare-box", models: ["sdxl"], can: bare })).toBeUndefined();
    // A LoRA of another name does not do either.
    expect(await jobs.takeNext({ workerId: "other-lora", models: ["sdxl"], can: { refiners: [], loras: ["style"] } })).toBeUndefined();
    const full = { refiners: ["sdxl"], loras: ["detail", "style"] };
    expect((await jobs.takeNext({ workerId: "full-box", models: ["sdxl"], can: full }))?.id).toBe(refined.id);
    expect((await jobs.takeNext({ workerId: "full-box", models: ["sdxl"], can: full }))?.id).toBe(withLora.id);
  });

  it("keeps a registry of workers: models and what each is, device, heartbeat, the job each runs; a goodbye removes one", async () => {
    const { jobs, registry } = store;
    const studioModels = { sdxl: { family: "sdxl" as const, refiner: true }, sd15: { family: "sd15" as const, refiner: false } };
    await registry.register({ id: "mac-studio", host: "studio.local", models: ["sdxl", "sd15"], device: null, modelInfo: studioModels, loras: [{ name: "detail", family: "sdxl" }] });
    await registry.register({ id: "cuda-box", host: "rack-1", models: ["sdxl"], device: "cuda" });
    await pool.query(`UPDATE workers SET heartbeat_at = now() - interval '1 minute' WHERE id = 'cuda-box'`);
    const job = await jobs.enqueue(makeRequest({ model: { name: "sd15", path: "/m/sd15", refinerPath: null } }));
    await jobs.takeNext({ workerId: "mac-studio", models: ["sdxl", "sd15"] });
    expect(await registry.workers(30_000)).toEqual([
      { id: "cuda-box", host: "rack-1", models: ["sdxl"], modelInfo: {}, loras: [], device: "cuda", notice: null, heartbeatAt: expect.any(String), alive: false, runningJobId: null },
      { id: "mac-studio", host: "studio.local", models: ["sdxl", "sd15"], modelInfo: studioModels, loras: [{ name: "detail", family: "sdxl" }], device: null, notice: null, heartbeatAt: expect.any(String), alive: true, runningJobId: job.id },
    ]);
    // The device once the worker's runner says it; a beat without one keeps what was known.
    expect(await registry.heartbeat("mac-studio", "mps")).toBe(true);
    expect(await registry.heartbeat("mac-studio", null)).toBe(true);
    expect((await registry.workers(30_000)).find((worker) => worker.id === "mac-studio")?.device).toBe("mps");
    // A worker starting again starts without the notice its last life left.
    await registry.setNotice("mac-studio", "storage is unavailable (ECONNREFUSED); retrying");
    expect((await registry.workers(30_000)).find((worker) => worker.id === "mac-studio")?.notice).toMatch(/^storage is unavailable/);
    await registry.register({ id: "mac-studio", host: "studio.local", models: ["sdxl", "sd15"], device: "mps", modelInfo: studioModels });
    expect((await registry.workers(30_000)).find((worker) => worker.id === "mac-studio")?.notice).toBeNull();
    expect(await registry.heartbeat("cuda-box")).toBe(true);
    expect((await registry.workers(30_000)).find((worker) => worker.id === "cuda-box")?.alive).toBe(true);
    await registry.forget("cuda-box");
    expect(await registry.heartbeat("cuda-box")).toBe(false);
    expect((await registry.workers(30_000)).map((worker) => worker.id)).toEqual(["mac-studio"]);
  });

  it("a worker that goes silent mid-job loses it to the next beat of a live one; the late finish is fenced out; a goodbye unregisters", async () => {
    const { jobs, registry } = store;
    const timing = { heartbeatMs: 40, staleMs: 400 };
    // The doomed host registered, took a job, and then beat no more: a kill -9, as far as the registry can tell.
    await registry.register({ id: "doomed", host: "doomed", models: ["m"], device: "cpu" });
    const survivor = new WorkerPresence(portOn(pool).jobs, registry, { id: "survivor", host: "survivor", models: ["m"], device: () => "cpu" }, timing, quiet);
    await survivor.start();
    const job = await jobs.enqueue(makeRequest({ prompt: "its host dies" }));
    expect((await jobs.takeNext({ workerId: "doomed" }))?.attempts).toBe(1);
    await waitUntil("a live worker put the job back", async () => (await jobs.get(job.id))?.state === "queued", { timeoutMs: 5_000, intervalMs: 20 });
    expect((await jobs.takeNext({ workerId: "survivor" }))?.attempts).toBe(2);
    expect(await jobs.finish(job.id, "running", "done", { attempt: 1 }), "the dead host's late finish").toBe(false);
    expect(await jobs.finish(job.id, "running", "done", { attempt: 2 })).toBe(true);
    await survivor.stop();
    expect((await registry.workers(60_000)).map((worker) => worker.id)).toEqual(["doomed"]);
  });

  it("runs a job through runJob on Postgres: stored, done and indexed together; a crashed engine's job gets its one retry", async () => {
    const { jobs, images: index } = store;
    const dir = mkdtempSync(path.join(tmpdir(), "kitty-pg-run-"));
    // The stand-in engine (a test double of the runner) is enough here: what is under test is the run's use of the database.
    const engine = new FakeEngine();
    engine.script.push(new EngineJobError("runner_crashed", "the diffusers runner stopped (signal SIGKILL)", true));
    const deps = {
      jobs,
      engine,
      store: new LocalImageStore(path.join(dir, "files")),
      staging: new StagingArea(path.join(dir, "staging")),
      keyPrefix: "images/",
      backoff: { first: 5, max: 20 },
      setNotice: async () => undefined,
      observer: NO_OBSERVER,
      log: quiet,
    };
    const signals = () => ({ stop: new AbortController().signal, letGo: new AbortController().signal });
    const job = await jobs.enqueue(makeRequest({ prompt: "on Postgres", width: 256, height: 256, count: 2 }));

    expect(await runJob((await jobs.takeNext({ workerId: "w1" }))!, deps, signals())).toBe("finished");
    expect(await jobs.get(job.id)).toMatchObject({ state: "queued", attempts: 1 });
    expect(await runJob((await jobs.takeNext({ workerId: "w1" }))!, deps, signals())).toBe("finished");
    const done = await jobs.get(job.id);
    expect(done).toMatchObject({ state: "done", attempts: 2 });
    const images = await index.ofJob(job.id);
    expect(images.map((image) => image.key)).toEqual([done!.imageKey, done!.imageKey!.replace(/\.png$/, "_2.png")]);
    expect((await index.latest(10)).images.map((image) => image.key)).toEqual(images.map((image) => image.key).reverse());
  });

  it("two workers share the queue: each job runs once, a model only one has runs only there, and a cancel from a front-end reaches the running job over the channel", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "kitty-pg-workers-"));
    const files = new LocalImageStore(path.join(dir, "files"));
    const frontEnd = portOn(pool).jobs;
    // What every process hears on the jobs channel.
    const heard = new JobEvents();
    const workers = (["small-box", "big-box"] as const).map((workerId) => {
      const engine = new FakeEngine(2);
      const ownPool = createPgPool(server.url, quiet, 2);
      const { jobs, registry } = portOn(ownPool);
      const models = workerId === "big-box" ? ["m", "xl"] : ["m"];
      const presence = new WorkerPresence(jobs, registry, { id: workerId, host: workerId, models, device: () => "cpu" }, { heartbeatMs: 30_000, staleMs: 60_000 }, quiet);
      const worker = new Worker({
        jobs,
        // Polls far apart: what wakes them and brings the cancel is the channel.
        source: new SharedJobSource(jobs, registry, presence, { workerId, models, queuePollMs: 30_000 }),
        heard,
        engine,
        store: files,
        staging: new StagingArea(path.join(dir, `staging-${workerId}`)),
        keyPrefix: "images/",
        log: quiet,
        timing: { backoff: { first: 5, max: 50 }, cancelPollMs: 30_000 },
      });
      return { workerId, engine, worker, ownPool };
    });
    const listener = new PgJobListener(server.url, { onEvent: (name, jobId) => heard.emit(name, jobId), onReconnect: () => undefined }, { first: 50, max: 400 }, quiet);
    await listener.start();
    await Promise.all(workers.map(({ worker }) => worker.start()));
    try {
      const xl = { name: "xl", path: "/m/xl", refinerPath: null };
      const queued = [];
      for (let n = 0; n < 20; n++) queued.push(await frontEnd.enqueue(makeRequest({ prompt: `job ${n}`, width: 256, height: 256, ...(n % 5 === 0 && { model: xl }) })));
      await waitUntil("all 20 jobs are done", async () => (await frontEnd.countByState()).done === 20, { timeoutMs: 30_000, intervalMs: 50 });
      const index = portOn(pool).images;
      expect(await index.count()).toBe(20);
      for (const job of queued) expect(await index.ofJob(job.id)).toHaveLength(1);
      const ran = Object.fromEntries(workers.map(({ workerId, engine }) => [workerId, engine.calls.map((request) => request.model.name)]));
      expect(ran["small-box"]!.filter((model) => model === "xl")).toEqual([]);
      expect(ran["big-box"]!.filter((model) => model === "xl")).toHaveLength(4);
      expect(ran["small-box"]!.length + ran["big-box"]!.length).toBe(20);

      workers[1]!.engine.script.push("hang");
      const long = await frontEnd.enqueue(makeRequest({ prompt: "cancelled from a front-end", model: xl }));
      await waitUntil("the big box runs it", async () => ((await frontEnd.get(long.id))?.progress?.step ?? 0) > 0, { timeoutMs: 10_000, intervalMs: 20 });
      const asked = Date.now();
      expect(await frontEnd.requestCancel(long.id)).toBe(true);
      await waitUntil("the job ends cancelled", async () => (await frontEnd.get(long.id))?.state === "cancelled", { timeoutMs: 5_000, intervalMs: 10 });
      expect(Date.now() - asked, "heard on the channel, not by polling every 30 s").toBeLessThan(2_000);
    } finally {
      await Promise.all(workers.map(({ worker }) => worker.stop()));
      await listener.stop();
      await Promise.all(workers.map(({ ownPool }) => ownPool.end()));
    }
  });

  it("a worker's notice (storage down) reaches job_status on any front-end, and clears once the job goes on", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "kitty-pg-notice-"));
    const files = new FlakyStore(new LocalImageStore(path.join(dir, "files")));
    files.failForever = Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:9000"), { code: "ECONNREFUSED" });
    const { jobs, registry } = portOn(pool);
    const presence = new WorkerPresence(jobs, registry, { id: "gpu-1", host: "gpu-1", models: ["m"], device: () => "cuda" }, { heartbeatMs: 30_000, staleMs: 60_000 }, quiet);
    const worker = new Worker({
      jobs,
      source: new SharedJobSource(jobs, registry, presence, { workerId: "gpu-1", models: ["m"], queuePollMs: 50 }),
      heard: jobs.events,
      engine: new FakeEngine(1),
      store: files,
      staging: new StagingArea(path.join(dir, "staging")),
      keyPrefix: "images/",
      log: quiet,
      timing: { backoff: { first: 20, max: 100 }, cancelPollMs: 50 },
    });
    const front = portOn(pool);
    const frontEnd = new JobQueue(front.jobs, { events: front.jobs.events, pollMs: 2_000, waitingReason: (job) => sharedWaitingReason(front.registry, 60_000, job) });
    await worker.start();
    try {
      const { job } = await frontEnd.enqueue(makeRequest({ prompt: "stored later", width: 256, height: 256 }));
      const notice = await waitUntil("the front-end says why the job waits", async () => frontEnd.waitingReason(await frontEnd.get(job.id)), { timeoutMs: 10_000, intervalMs: 20 });
      expect(notice).toMatch(/^storage is unavailable \(connect ECONNREFUSED 127\.0\.0\.1:9000\); retrying$/);
      files.failForever = null;
      expect((await frontEnd.waitForEnd(job.id, 10_000)).state).toBe("done");
      await waitUntil("the notice is cleared", async () => (await registry.workers(60_000))[0]?.notice === null, { timeoutMs: 5_000, intervalMs: 20 });
      // A model no live worker has: the queued job says so.
      const orphan = await frontEnd.enqueue(makeRequest({ model: { name: "flux", path: "/m/flux", refinerPath: null } }));
      expect(await frontEnd.waitingReason(orphan.job)).toBe(
        "no live worker has model 'flux'; it waits for one (start `kitty-images worker` on a host whose models.yaml has it). Live workers serve: m.",
      );
    } finally {
      await worker.stop();
    }
  });

  it("reindex rebuilds the shared index from storage: sidecars as stored, a PNG without one from its chunks, each with its done job, idempotent", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "kitty-pg-reindex-"));
    const files = new LocalImageStore(path.join(dir, "files"));
    const source = path.join(dir, "source.png");
    writeFileSync(source, makePng(320, 256));
    const key = "images/20261121_120000_00000001.png";
    const result = { width: 320, height: 256, seed: 9, family: "sd15", scheduler: "euler_a", device: "cuda", dtype: "float16", options: {}, modelLoads: 1, stepsRun: 4, promptTokens: 2, timings: { loadSeconds: 0, inferenceSeconds: 1, saveSeconds: 0 }, versions: {} };
    await files.put(key, source, buildSidecar({ key, jobId: "job-1", engine: "diffusers", pngBytes: 99, createdAt: new Date(Date.UTC(2026, 10, 21)) }, makeRequest({ prompt: "stored" }), result));
    mkdirSync(path.join(dir, "files", "images", "imported"), { recursive: true });
    writeFileSync(path.join(dir, "files", "images", "imported", "ours.png"), makePng(64, 48, { "kitty-images": JSON.stringify({ prompt: "a lost sidecar", model: "sdxl_base", seed: 77 }) }));
    const { jobs, images: index } = store;
    const deps = { jobs, images: index, store: files, keyPrefix: "images/", log: quiet };
    expect(await reindex(deps)).toEqual({ scanned: 2, added: 2, alreadyIndexed: 0, withoutSidecar: 1, unreadable: 0, uploadsAdded: 0 });
    expect(await index.byKey(key)).toMatchObject({ jobId: "job-1", prompt: "stored", width: 320, seed: 9, metadata: { device: "cuda" } });
    expect(await store.jobs.get("job-1")).toMatchObject({ state: "done", imageKey: key, request: { prompt: "stored" } });
    expect(await index.byKey("images/imported/ours.png")).toMatchObject({ prompt: "a lost sidecar", model: "sdxl_base", width: 64, height: 48 });
    expect(await reindex(deps)).toEqual({ scanned: 2, added: 0, alreadyIndexed: 2, withoutSidecar: 0, unreadable: 0, uploadsAdded: 0 });
    expect(await index.count()).toBe(2);
  });

  it("recovers only the jobs of workers that stopped heartbeating", async () => {
    const { jobs } = store;
    await pool.query(`INSERT INTO workers (id, host, models, heartbeat_at) VALUES ('alive', 'a', '{m}', now()), ('silent', 'b', '{m}', now() - interval '5 minutes')`);
    const held = await jobs.enqueue(makeRequest({ prompt: "held by a live worker" }));
    const orphaned = await jobs.enqueue(makeRequest({ prompt: "held by a silent one" }));
    await jobs.takeNext({ workerId: "alive" });
    await jobs.takeNext({ workerId: "silent" });
    expect(await jobs.recoverInterrupted(60_000)).toEqual({ resumed: [orphaned.id], failed: [] });
    expect((await jobs.get(held.id))?.state).toBe("running");
    expect(await jobs.get(orphaned.id)).toMatchObject({ state: "queued", attempts: 1 });
  });

  it("announces every change on the NOTIFY channel, for front-ends and workers on other hosts", async () => {
    const listener = new pg.Client({ connectionString: server.url });
    await listener.connect();
    const heard: string[] = [];
    listener.on("notification", (message) => heard.push(message.payload ?? ""));
    await listener.query(`LISTEN ${JOBS_CHANNEL}`);
    try {
      const { jobs } = store;
      const job = await jobs.enqueue(makeRequest({ prompt: "heard elsewhere" }));
      await jobs.takeNext();
      await jobs.setProgress(job.id, 1, 1, 4);
      await jobs.setProgress(job.id, 9, 2, 4); // stale: nothing changes, nothing is heard
      await jobs.requestCancel(job.id);
      await jobs.finish(job.id, "running", "cancelled");
      const expected = ["enqueued", "progress", "cancelRequested", "ended"].map((event) => `${event} ${job.id}`);
      await waitUntil("the listener heard every change", () => heard.length >= expected.length, { timeoutMs: 5_000 });
      expect(heard).toEqual(expected);
    } finally {
      await listener.end();
    }
  });
});

describe.skipIf(noPostgres !== null)("PgJobListener: the job channel across a Postgres restart", () => {
  let server: PostgresServer;
  let pool: pg.Pool;

  beforeAll(async () => {
    server = await startPostgres();
    pool = createPgPool(server.url, quiet, 2);
    await migratePostgres(pool);
  });
  afterAll(async () => {
    await pool?.end();
    await server?.stop();
  });

  it("hears what another process changes, reconnects with backoff when Postgres restarts, says so, and hears again", async () => {
    const heard: string[] = [];
    let reconnects = 0;
    const listener = new PgJobListener(
      server.url,
      { onEvent: (name, jobId) => heard.push(`${name} ${jobId}`), onReconnect: () => reconnects++ },
      { first: 50, max: 400 },
      pino({ level: "silent" }),
    );
    await listener.start();
    try {
      const elsewhere = portOn(pool).jobs; // another process's store: its own local events are not ours
      const before = await elsewhere.enqueue(makeRequest({ prompt: "before the restart" }));
      await waitUntil("the first change is heard", () => heard.includes(`enqueued ${before.id}`), { timeoutMs: 5_000 });

      await server.restart();
      await waitUntil("the listener is back", () => reconnects === 1, { timeoutMs: 20_000, intervalMs: 50 });
      const after = await elsewhere.enqueue(makeRequest({ prompt: "after the restart" }));
      await elsewhere.takeNext();
      await elsewhere.requestCancel(before.id);
      await waitUntil("changes after the restart are heard", () => heard.includes(`cancelRequested ${before.id}`), { timeoutMs: 5_000 });
      expect(heard).toEqual([`enqueued ${before.id}`, `enqueued ${after.id}`, `cancelRequested ${before.id}`]);
      expect((await elsewhere.get(before.id))?.state, "the job acknowledged before the restart is still there").toBe("running");
    } finally {
      await listener.stop();
    }
  });
});
