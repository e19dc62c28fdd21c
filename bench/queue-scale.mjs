// Queue-only throughput for scale-out: W workers (1-8) taking jobs from the Postgres queue at once, each job taken,
// given one progress step and completed with nothing generated (a no-op engine), beside the SQLite queue's one worker
// in the same run. Prints jobs/s, the ratio to one worker, and the queue's own cost per job on each backend.
//
//   node bench/queue-scale.mjs --database-url postgres://user@127.0.0.1:5432/db [--jobs 2000]
//
// Any Postgres 14+ (scripts/setup-postgres.sh installs Debian's). The bench creates its tables there and empties
// the jobs, images and workers tables before each run: give it a database of its own. Runs on the built modules.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import pino from "pino";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: { "database-url": { type: "string", default: process.env.KITTY_IMAGES_DATABASE_URL }, jobs: { type: "string", default: "2000" } },
});
if (!values["database-url"]) {
  console.error("give --database-url postgres://… (or KITTY_IMAGES_DATABASE_URL): a database of its own, emptied before each run");
  process.exit(2);
}
const JOBS = Number(values.jobs);
const { openDatabase } = await import(path.join(root, "dist/db/sqlite/database.js"));
const { JobStore } = await import(path.join(root, "dist/db/sqlite/jobs.js"));
const { PgJobStore, migratePostgres } = await import(path.join(root, "dist/db/postgres/jobs.js"));
const { createPgPool } = await import(path.join(root, "dist/db/postgres/pool.js"));

const quiet = pino({ level: "silent" });
const request = { prompt: "queue", negativePrompt: null, model: { name: "m", path: "/m", refinerPath: null }, width: 512, height: 512, steps: 4, cfgScale: 7, seed: 1, scheduler: null, refiner: null };
const median = (numbers) => [...numbers].sort((a, b) => a - b)[Math.floor(numbers.length / 2)];

/** One worker's loop: take, one progress step, complete; returns each job's cycle time in ms. */
async function drain(jobs, workerId) {
  const cycles = [];
  for (;;) {
    const started = performance.now();
    const job = await jobs.takeNext(workerId);
    if (!job) return cycles;
    await jobs.setProgress(job.id, job.attempts, 1, 1);
    await jobs.complete(job.id, job.attempts, async () => {});
    cycles.push(performance.now() - started);
  }
}

// SQLite: the embedded default, one worker (one GPU per data dir by design).
const sqlite = new JobStore(openDatabase(path.join(mkdtempSync(path.join(tmpdir(), "kitty-queue-")), "kitty.sqlite")));
for (let n = 0; n < JOBS; n++) sqlite.enqueue(request);
let started = performance.now();
const sqliteCycles = await drain(sqlite, undefined);
const sqliteRate = JOBS / ((performance.now() - started) / 1000);

// Postgres: 1, 2, 4 and 8 workers at once, each on its own connection (as separate hosts would be).
const admin = createPgPool(values["database-url"], quiet, 1);
await migratePostgres(admin);
const results = [];
for (const workers of [1, 2, 4, 8]) {
  await admin.query(`TRUNCATE images, jobs, workers RESTART IDENTITY CASCADE`);
  const enqueuer = new PgJobStore(admin);
  for (let n = 0; n < JOBS; n++) await enqueuer.enqueue(request);
  const pools = Array.from({ length: workers }, () => createPgPool(values["database-url"], quiet, 1));
  started = performance.now();
  const perWorker = await Promise.all(pools.map((pool, index) => drain(new PgJobStore(pool), `bench-${index}`)));
  const seconds = (performance.now() - started) / 1000;
  const taken = perWorker.flat().length;
  if (taken !== JOBS) throw new Error(`${workers} workers took ${taken} of ${JOBS} jobs`);
  results.push({ workers, rate: JOBS / seconds, cycle: median(perWorker.flat()) });
  await Promise.all(pools.map((pool) => pool.end()));
}
await admin.end();

console.log(`queue-only throughput, ${JOBS} jobs, Node ${process.version}: take + 1 progress step + complete, no generation`);
console.log(`  SQLite, 1 worker                ${sqliteRate.toFixed(0).padStart(6)} jobs/s   ${median(sqliteCycles).toFixed(3)} ms a job`);
for (const { workers, rate, cycle } of results) {
  console.log(`  Postgres, ${workers} worker(s)            ${rate.toFixed(0).padStart(6)} jobs/s   ${cycle.toFixed(3)} ms a job   ${(rate / results[0].rate).toFixed(2)}x one worker`);
}
console.log(`  Postgres / SQLite, queue cost per job (1 worker): ${(results[0].cycle / median(sqliteCycles)).toFixed(1)}x`);
console.log(`  the queue's cost beside a generation: ${results[0].cycle.toFixed(1)} ms against seconds per image (tiny model ~0.15 s, SDXL 1024² many seconds)`);
