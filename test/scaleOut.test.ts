import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { execa, type ResultPromise } from "execa";
import { createWriteStream, writeFileSync } from "node:fs";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import type { GenerationRequest } from "../src/generation.js";
import type { Job } from "../src/queue/jobStore.js";
import { createPgPool } from "../src/queue/pgPool.js";
import { migratePostgres, PgJobStore } from "../src/queue/pgJobStore.js";
import { PgImageIndex } from "../src/storage/pgImageIndex.js";
import { s3ClientFor, startMinio, type MinioServer } from "./helpers/minio.js";
import { SERVER_ENTRY } from "./helpers/paths.js";
import { startPostgres, whyNoPostgres, type PostgresServer } from "./helpers/postgres.js";
import { isAlive, makeTestHome, s3Env, serverEnv, type TestHome } from "./helpers/server.js";
import { waitUntil } from "./helpers/waitUntil.js";

/**
 * Scale-out, the workers' half: `kitty-images worker` processes on loopback, each with the real runner and tiny
 * models, sharing one Postgres queue and one MinIO. Jobs are queued straight into the store here: the MCP and REST
 * front-ends on Postgres come next.
 */
const noPostgres = whyNoPostgres();
if (noPostgres) console.warn(`scaleOut: skipped, ${noPostgres}`);
const BUCKET = "kitty-scale-out";

describe.skipIf(noPostgres !== null)("GPU workers on several hosts, one Postgres queue", () => {
  let postgres: PostgresServer;
  let minio: MinioServer;
  let s3: S3Client;
  let pool: ReturnType<typeof createPgPool>;
  let queue: PgJobStore;
  const workers = new Map<string, { process: ResultPromise; home: TestHome }>();

  beforeAll(async () => {
    [postgres, minio] = await Promise.all([startPostgres(), startMinio()]);
    s3 = s3ClientFor(minio);
    pool = createPgPool(postgres.url, pino({ level: "silent" }), 4);
    await migratePostgres(pool);
    queue = new PgJobStore(pool);
  });

  afterAll(async () => {
    for (const { process: child } of workers.values()) child.kill("SIGTERM");
    await Promise.all([...workers.values()].map(({ process: child }) => child.catch(() => undefined)));
    await pool?.end();
    s3?.destroy();
    await minio?.stop();
    await postgres?.stop();
  });

  /** A worker host of its own (data dir, staging, models.yaml), started as `kitty-images worker`. */
  async function startWorker(id: string, modelsYaml?: string): Promise<void> {
    const home = await makeTestHome(inject("tinyModelsDir"));
    if (modelsYaml) writeFileSync(home.modelsYaml, modelsYaml);
    const env = serverEnv(home, { ...s3Env(minio, BUCKET), KITTY_IMAGES_DATABASE_URL: postgres.url, KITTY_IMAGES_WORKER_ID: id, OMP_NUM_THREADS: "1" });
    const child = execa(process.execPath, [SERVER_ENTRY, "worker"], { env, extendEnv: false, reject: false, stdout: "ignore", stderr: "pipe" });
    child.stderr?.pipe(createWriteStream(path.join(home.home, `worker-${id}.log`)));
    workers.set(id, { process: child, home });
    await waitUntil(`worker ${id} registered`, async () => (await queue.workers(60_000)).some((worker) => worker.id === id), { timeoutMs: 30_000, intervalMs: 100 });
  }

  function request(model: "tiny_sd15" | "tiny_sdxl", prompt: string, steps = 2): GenerationRequest {
    const folder = model === "tiny_sd15" ? "sd15" : "sdxl";
    return {
      prompt,
      negativePrompt: null,
      model: { name: model, path: path.join(inject("tinyModelsDir"), folder), refinerPath: null },
      width: 256,
      height: 256,
      steps,
      cfgScale: 7,
      seed: 7,
      scheduler: null,
      refiner: null,
    };
  }

  async function ranOn(jobId: string): Promise<string | null> {
    return ((await pool.query(`SELECT worker_id FROM jobs WHERE id = $1`, [jobId])).rows[0]?.worker_id as string | null) ?? null;
  }

  it("spreads jobs over the workers, each done once; a model only one host has runs only there; a worker killed mid-job loses it to another, which finishes it once; a Postgres restart mid-run loses nothing", async () => {
    const tiny = inject("tinyModelsDir");
    await startWorker("big-box");
    await startWorker("small-box", `tiny_sd15: ${path.join(tiny, "sd15")}\n`);
    expect((await queue.workers(60_000)).map(({ id, models }) => ({ id, models }))).toEqual([
      { id: "big-box", models: ["tiny_sd15", "tiny_sdxl", "tiny_sd15_file"] },
      { id: "small-box", models: ["tiny_sd15"] },
    ]);

    const sd15 = [];
    for (let n = 0; n < 8; n++) sd15.push(await queue.enqueue(request("tiny_sd15", `sd15 ${n}`)));
    const sdxl = [await queue.enqueue(request("tiny_sdxl", "sdxl 0")), await queue.enqueue(request("tiny_sdxl", "sdxl 1"))];
    const all = [...sd15, ...sdxl];
    await waitUntil("the ten jobs are done", async () => (await queue.countByState()).done === all.length, { timeoutMs: 180_000, intervalMs: 200 });
    const where = await Promise.all(all.map((job) => ranOn(job.id)));
    expect(new Set(where.slice(0, 8)).size, "the SD 1.5 jobs were spread over both hosts").toBe(2);
    expect(where.slice(8)).toEqual(["big-box", "big-box"]);

    // A long job; kill -9 the host running it. Its heartbeat stops; the other host's next beat after 15 s takes it back.
    const long = await queue.enqueue(request("tiny_sd15", "its host dies", 150));
    const victim = await waitUntil("the long job reports steps", async () => {
      const job = await queue.get(long.id);
      return job?.state === "running" && (job.progress?.step ?? 0) > 0 && (await ranOn(long.id));
    }, { timeoutMs: 60_000, intervalMs: 50 });
    const victimPid = workers.get(victim)!.process.pid!;
    process.kill(victimPid, "SIGKILL");
    await waitUntil("the killed host is gone", () => !isAlive(victimPid), { timeoutMs: 10_000, intervalMs: 50 });
    await waitUntil("the long job is done", async () => (await queue.get(long.id))?.state === "done", { timeoutMs: 120_000, intervalMs: 200 });
    expect(await queue.get(long.id)).toMatchObject({ attempts: 2 });
    expect(await ranOn(long.id)).not.toBe(victim);

    // Postgres restarted while jobs are queued and running: the workers reconnect and every job ends done, once.
    const duringRestart: Job[] = [];
    for (let n = 0; n < 4; n++) duringRestart.push(await queue.enqueue(request("tiny_sd15", `through a restart ${n}`, 40)));
    await waitUntil("a job runs", async () => ((await queue.get(duringRestart[0]!.id))?.progress?.step ?? 0) > 0, { timeoutMs: 60_000, intervalMs: 50 });
    await postgres.restart();
    await waitUntil("the jobs queued before the restart are done", async () => {
      const states = await Promise.all(duringRestart.map(async (job) => (await queue.get(job.id))?.state));
      return states.every((state) => state === "done");
    }, { timeoutMs: 120_000, intervalMs: 250 });

    // Exactly once: every job done has one image, in the index and in the bucket, and nothing else is there.
    const index = new PgImageIndex(pool);
    const keys: string[] = [];
    for (const job of [...all, long, ...duringRestart]) {
      const images = await index.ofJob(job.id);
      expect(images, `job ${job.request.prompt}`).toHaveLength(1);
      keys.push(images[0]!.key);
    }
    const listing = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    const pngs = (listing.Contents ?? []).map((object) => object.Key!).filter((key) => key.endsWith(".png"));
    expect(pngs.sort()).toEqual([...keys].sort());
    expect(await index.count()).toBe(keys.length);
  });
});
