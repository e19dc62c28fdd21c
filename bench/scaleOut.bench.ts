// Scale-out throughput and latency, side by side in one run: the same tiny workload through
//   - the embedded default (one `serve --http` on SQLite, running its own jobs), and
//   - one front-end on Postgres with 1, 2 and 3 `kitty-images worker` processes,
// all storing to one MinIO. Prints jobs/minute with the ratio to one worker, and each backend's end-to-end latency of
// a single job on an idle queue (the queue's added latency is the difference). Then the queue-only figures
// (bench/queue-scale.mjs, a no-op engine, 1-8 workers) on the same Postgres.
//
//   npm run bench:scale-out              (KITTY_BENCH_JOBS=24, KITTY_BENCH_STEPS=8, KITTY_BENCH_LATENCY_RUNS=7)
//
// Runs through vitest only to reuse the tests' Postgres, MinIO and tiny-model helpers; it asserts nothing and is
// not part of npm test. Workers run with OMP_NUM_THREADS=1, as on the tests: on 2 cores more threads only contend.
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { execa, type ResultPromise } from "execa";
import { createWriteStream, writeFileSync } from "node:fs";
import path from "node:path";
import { inject, it } from "vitest";
import { startHttpServer, type RunningHttpServer } from "../test/helpers/httpServer.js";
import { startMinio, type MinioServer } from "../test/helpers/minio.js";
import { PROJECT_ROOT, SERVER_ENTRY } from "../test/helpers/paths.js";
import { startPostgres, whyNoPostgres, type PostgresServer } from "../test/helpers/postgres.js";
import { makeTestHome, s3Env, serverEnv } from "../test/helpers/server.js";
import { toolCalls, type ToolCalls } from "../test/helpers/toolCalls.js";
import { waitUntil } from "../test/helpers/waitUntil.js";

const JOBS = Number(process.env.KITTY_BENCH_JOBS ?? 24);
const STEPS = Number(process.env.KITTY_BENCH_STEPS ?? 8);
const LATENCY_RUNS = Number(process.env.KITTY_BENCH_LATENCY_RUNS ?? 7);
const THREADS = { OMP_NUM_THREADS: "1" };

const median = (numbers: number[]) => [...numbers].sort((a, b) => a - b)[Math.floor(numbers.length / 2)]!;

interface Door extends ToolCalls {
  server: RunningHttpServer;
  client: Client;
}

async function openDoor(server: RunningHttpServer): Promise<Door> {
  const client = new Client({ name: "scale-out-bench", version: "0" });
  await client.connect(new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`)));
  return { server, client, ...toolCalls(client) };
}

const job = (n: number) => ({ prompt: `bench ${n}`, model: "tiny_sd15", width: 256, height: 256, steps: STEPS, seed: n });

/** Queues `count` jobs at once and waits for all; jobs per minute from the first enqueue to the last end. */
async function throughput(door: Door, count: number, offset: number): Promise<number> {
  const started = performance.now();
  const ids: string[] = [];
  for (let n = 0; n < count; n++) ids.push((await door.ok("generate_image", job(offset + n))).jobId);
  for (const jobId of ids) {
    const status = await waitUntil(`job ${jobId} ends`, async () => {
      const answer = await door.ok("job_status", { jobId, wait_seconds: 30 });
      return answer.status !== "queued" && answer.status !== "running" && answer;
    }, { timeoutMs: 600_000, intervalMs: 0 });
    if (status.status !== "done") throw new Error(`job ${jobId} ended ${status.status}: ${JSON.stringify(status.error)}`);
  }
  return count / ((performance.now() - started) / 60_000);
}

/** One job at a time on an idle queue: enqueue to the answer that says done, each run's ms. */
async function latencies(door: Door, offset: number): Promise<number[]> {
  const times: number[] = [];
  for (let n = 0; n < LATENCY_RUNS; n++) {
    const started = performance.now();
    const { jobId } = await door.ok("generate_image", job(offset + n));
    const status = await door.ok("job_status", { jobId, wait_seconds: 50 });
    if (status.status !== "done") throw new Error(`latency job ended ${status.status}`);
    times.push(performance.now() - started);
  }
  return times;
}

it.skipIf(whyNoPostgres() !== null)("scale-out: 1, 2, 3 workers against the embedded SQLite server", async () => {
  const tiny = inject("tinyModelsDir");
  let postgres: PostgresServer | undefined;
  let minio: MinioServer | undefined;
  const children: ResultPromise[] = [];
  const doors: Door[] = [];
  try {
    [postgres, minio] = await Promise.all([startPostgres(), startMinio()]);

    // The embedded default: one server that runs its own jobs.
    const sqliteHome = await makeTestHome(tiny);
    const sqliteDoor = await openDoor(await startHttpServer(sqliteHome, { ...s3Env(minio, "bench-sqlite"), ...THREADS }));
    doors.push(sqliteDoor);
    await throughput(sqliteDoor, 2, 10_000); // warm: the runner is up and the model loaded
    const sqliteRate = await throughput(sqliteDoor, JOBS, 0);
    const sqliteLatency = await latencies(sqliteDoor, 20_000);
    await sqliteDoor.client.close();
    await sqliteDoor.server.stop();
    doors.pop();

    // Postgres: one front-end, workers added one by one.
    const frontHome = await makeTestHome(tiny);
    const front = await openDoor(await startHttpServer(frontHome, { ...s3Env(minio, "bench-pg"), KITTY_IMAGES_DATABASE_URL: postgres.url }));
    doors.push(front);
    const rates: number[] = [];
    let pgLatency: number[] = [];
    for (let workers = 1; workers <= 3; workers++) {
      const home = await makeTestHome(tiny);
      const id = `worker-${workers}`;
      const env = serverEnv(home, { ...s3Env(minio, "bench-pg"), KITTY_IMAGES_DATABASE_URL: postgres.url, KITTY_IMAGES_WORKER_ID: id, ...THREADS });
      const child = execa(process.execPath, [SERVER_ENTRY, "worker"], { env, extendEnv: false, reject: false, stdout: "ignore", stderr: "pipe" });
      child.stderr?.pipe(createWriteStream(path.join(home.home, `${id}.log`)));
      children.push(child);
      await waitUntil(`${workers} worker(s) up`, async () => {
        const { workers: listed } = await front.ok("list_models");
        return listed.length === workers && listed.every((worker: { device: string | null }) => worker.device);
      }, { timeoutMs: 120_000, intervalMs: 250 });
      await throughput(front, 2 * workers, 30_000 + workers * 100); // warm every worker's runner
      rates.push(await throughput(front, JOBS, workers * 1_000));
      if (workers === 1) pgLatency = await latencies(front, 40_000);
    }

    const lines = [
      "",
      `scale-out bench: ${JOBS} jobs of tiny SD 1.5, 256x256, ${STEPS} steps, OMP_NUM_THREADS=1, one MinIO, ${new Date().toISOString()}`,
      `  SQLite, one server running its jobs : ${sqliteRate.toFixed(1)} jobs/min`,
      ...rates.map((rate, n) => `  Postgres, ${n + 1} worker(s)             : ${rate.toFixed(1)} jobs/min (${(rate / rates[0]!).toFixed(2)}x one worker, ${(rate / sqliteRate).toFixed(2)}x SQLite)`),
      `  one job, idle queue, enqueue to done (median of ${LATENCY_RUNS}): SQLite ${median(sqliteLatency).toFixed(0)} ms, Postgres ${median(pgLatency).toFixed(0)} ms ` +
        `(added by the Postgres queue: ${(median(pgLatency) - median(sqliteLatency)).toFixed(0)} ms)`,
      `  latency runs, ms: SQLite [${sqliteLatency.map((ms) => ms.toFixed(0)).join(", ")}], Postgres [${pgLatency.map((ms) => ms.toFixed(0)).join(", ")}]`,
    ];
    console.log(lines.join("\n"));

    // The queue alone (no generation) on the same Postgres, 1-8 workers: bench/queue-scale.mjs.
    for (const child of children) child.kill("SIGTERM");
    await Promise.all(children.map((child) => child.catch(() => undefined)));
    children.length = 0;
    const queueOnly = await execa(process.execPath, [path.join(PROJECT_ROOT, "bench", "queue-scale.mjs"), "--database-url", postgres.url], { reject: false, all: true });
    console.log(queueOnly.all);
  } finally {
    for (const child of children) child.kill("SIGTERM");
    await Promise.all(children.map((child) => child.catch(() => undefined)));
    for (const door of doors) {
      await door.client.close().catch(() => undefined);
      await door.server.stop();
    }
    await minio?.stop();
    await postgres?.stop();
  }
}, 1_800_000);
