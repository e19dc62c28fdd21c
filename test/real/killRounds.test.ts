import { GetObjectCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import Database from "better-sqlite3";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { rm } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { s3ClientFor, startMinio, type MinioServer } from "../helpers/minio.js";
import { childPids, isAlive, makeTestHome, s3Env, startServer, waitForJob, type RunningServer, type TestHome } from "../helpers/server.js";
import { seededRandom } from "../helpers/soakPlan.js";
import { waitUntil } from "../helpers/waitUntil.js";

const SEED = Number(process.env.KITTY_KILL_SEED ?? 20260311);
const ROUNDS = 20;
const KILL_POINTS = ["queued", "runner starting", "mid-denoise", "while storing", "while indexing"] as const;
type KillPoint = (typeof KILL_POINTS)[number];
const SIZES = [256, 320, 384];
const BUCKET = "kitty-kill-rounds";
/** The job the queued ones wait behind: long enough to outlast two enqueues after its first step. */
const BUSY_STEPS = 12;


interface JobAsked {
  jobId: string;
  round: number;
  point: KillPoint;
  count: number;
}

interface RoundTally {
  rounds: number;
  jobs: number;
  done: number;
  failed: number;
  runnersExited: number;
  seconds: number[];
}

/**
 * Makes SQLite refuse the index row, as a full disk would, until `release`: the server keeps retrying the record
 * with backoff and stays responsive. (A write lock held from outside also blocks the lease heartbeat, whose 10 s
 * busy waits starve the event loop, so the upload itself would crawl.)
 */
function refuseIndexing(databasePath: string): { release(): void } {
  const db = new Database(databasePath);
  db.exec(`CREATE TRIGGER kill_rounds_hold BEFORE INSERT ON images BEGIN SELECT RAISE(ABORT, 'held by the kill rounds test'); END`);
  db.close();
  return {
    release() {
      const again = new Database(databasePath);
      again.exec("DROP TRIGGER IF EXISTS kill_rounds_hold");
      again.close();
    },
  };
}

/** Per kill point: rounds, jobs, how they ended, runners that exited, seconds a round took on average. */
function tallyTable(tally: Map<KillPoint, RoundTally>, totalSeconds: number): string {
  const rows = [...tally].map(([point, { rounds, jobs, done, failed, runnersExited, seconds }]) => {
    const perRound = seconds.reduce((sum, value) => sum + value, 0) / Math.max(1, rounds);
    return `${point.padEnd(16)}${String(rounds).padStart(7)}${String(jobs).padStart(6)}${String(done).padStart(6)}${String(failed).padStart(8)}${String(runnersExited).padStart(16)}${perRound.toFixed(1).padStart(13)}`;
  });
  return [`kill rounds, seed ${SEED}, ${totalSeconds.toFixed(0)} s`, "kill point       rounds  jobs  done  failed  runners exited  s per round", ...rows].join("\n");
}

describe("kill -9 at every point of a job's life loses nothing and duplicates nothing", () => {
  let minio: MinioServer;
  let s3: S3Client;
  let home: TestHome;
  let server: RunningServer;
  let indexingHold: { release(): void } | null = null;
  let minioFrozen = false;
  /** The data dir and its server logs stay behind when a round fails, to read why. */
  let passed = false;
  const asked: JobAsked[] = [];

  beforeAll(async () => {
    minio = await startMinio();
    s3 = s3ClientFor(minio);
    home = await makeTestHome(inject("tinyModelsDir"));
    server = await startServer(home, s3Env(minio, BUCKET));
  });

  afterAll(async () => {
    if (minioFrozen) minio.thaw();
    indexingHold?.release();
    await server?.close();
    s3?.destroy();
    await minio?.stop();
    if (passed) await rm(home.home, { recursive: true, force: true });
  });

  const statusOf = (jobId: string) => server.ok("job_status", { jobId });
  const stagedResult = (jobId: string) => path.join(home.home, "staging", `${jobId}.png.result.json`);

  async function enqueue(round: number, point: KillPoint, { steps, size, count }: { steps: number; size: number; count: number }): Promise<string> {
    const { jobId } = await server.ok("generate_image", { prompt: `round ${round} ${point}`, model: "tiny_sd15", width: size, height: size, steps, count, seed: 1000 + asked.length });
    asked.push({ jobId, round, point, count });
    return jobId;
  }

  /** Polls until `ready`; a job that ends first means the point was missed, which must fail loudly, not pass quietly. */
  async function waitForRun(jobId: string, what: string, ready: (status: Record<string, any>) => boolean, intervalMs = 20) {
    return waitUntil(`job ${jobId} ${what}`, async () => {
      const status = await statusOf(jobId);
      if (!["queued", "running"].includes(status.status)) throw new Error(`job ${jobId} ended ${status.status} before it was ${what}`);
      return ready(status) && status;
    }, { timeoutMs: 180_000, intervalMs });
  }
  const stepped = (atLeast: number) => (status: Record<string, any>) => status.status === "running" && status.progress.step >= atLeast;

  async function bucketKeys(): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET, ContinuationToken: token }));
      keys.push(...(page.Contents ?? []).map((object) => object.Key!));
      token = page.NextContinuationToken;
    } while (token);
    return keys;
  }

  /** Freezes MinIO once the job is past its check for an earlier upload, then waits until its image is staged. */
  async function freezeUpload(jobId: string): Promise<void> {
    await waitForRun(jobId, "past its first step", stepped(1));
    minio.freeze();
    minioFrozen = true;
    await waitForRun(jobId, "staged, its upload hanging", () => existsSync(stagedResult(jobId)), 50);
  }

  /** Brings the job to `point` and returns what was seen there, for the log of the round. */
  async function reach(round: number, point: KillPoint, random: () => number): Promise<string> {
    const size = SIZES[Math.floor(random() * SIZES.length)]!;
    const count = random() < 0.25 ? 2 : 1;
    switch (point) {
      case "queued": {
        const busy = await enqueue(round, point, { steps: BUSY_STEPS, size: 256, count: 1 });
        await waitForRun(busy, "past its first step", stepped(1));
        const waiting = [await enqueue(round, point, { steps: 2, size, count })];
        if (random() < 0.5) waiting.push(await enqueue(round, point, { steps: 2, size: 256, count: 1 }));
        const statuses = await Promise.all(waiting.map(statusOf));
        expect(statuses.map((status) => status.status)).toEqual(waiting.map(() => "queued"));
        const busyNow = await statusOf(busy);
        expect(busyNow.status).toBe("running");
        return `${waiting.length} queued behind a job at step ${busyNow.progress.step}/${BUSY_STEPS}`;
      }
      case "runner starting": {
        // A fresh server: its runner is still importing torch when the job is taken.
        await stopGracefully();
        server = await startServer(home, s3Env(minio, BUCKET));
        const jobId = await enqueue(round, point, { steps: 2, size, count });
        const status = await waitForRun(jobId, "taken, its runner spawned", (seen) => seen.status === "running" && childPids(server.pid).length > 0, 10);
        expect(status.progress.step).toBe(0);
        expect(readFileSync(server.logPath, "utf8")).not.toContain("diffusers runner ready");
        return "taken, step 0, runner spawned and not ready";
      }
      case "mid-denoise": {
        const steps = 8 + Math.floor(random() * 5);
        const killAt = 1 + Math.floor(random() * (steps - 3));
        const jobId = await enqueue(round, point, { steps, size, count });
        const status = await waitForRun(jobId, `at step ${killAt}`, stepped(killAt));
        return `step ${status.progress.step}/${steps} (aimed at ${killAt})`;
      }
      case "while storing": {
        // Enough steps left after the first for the freeze to come before the upload.
        const jobId = await enqueue(round, point, { steps: 10, size, count });
        await freezeUpload(jobId);
        return `${count} PNG(s) staged, MinIO frozen mid-upload`;
      }
      case "while indexing": {
        indexingHold = refuseIndexing(path.join(home.home, "kitty-images.sqlite"));
        const jobId = await enqueue(round, point, { steps: 3, size, count });
        const retrying = (line: string) => line.includes(jobId) && line.includes("could not record the finished job");
        await waitForRun(jobId, "retrying its record", () => readFileSync(server.logPath, "utf8").split("\n").some(retrying), 100);
        // Stored, not recorded: every sidecar is up (each goes after its PNG).
        const tag = `_${jobId.replace(/-/g, "").slice(0, 8)}`;
        expect((await bucketKeys()).filter((key) => key.includes(tag) && key.endsWith(".json"))).toHaveLength(count);
        expect((await statusOf(jobId)).status).toBe("running");
        return `${count} image(s) stored, their record refused and retried`;
      }
    }
  }

  async function stopGracefully(): Promise<void> {
    const runners = childPids(server.pid);
    const { pid } = server;
    await server.close();
    await waitUntil("the server and its runner have exited", () => ![pid, ...runners].some(isAlive), { timeoutMs: 30_000, intervalMs: 100 });
  }

  /** Undoes what held the job at its point: MinIO thawed, the index taking rows again. */
  function release(): void {
    if (minioFrozen) minio.thaw();
    minioFrozen = false;
    indexingHold?.release();
    indexingHold = null;
  }

  async function allImagesListed(): Promise<string[]> {
    const keys: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await server.ok("list_latest_images", { limit: 7, ...(cursor && { cursor }) });
      keys.push(...page.images.map((image: { key: string }) => image.key));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    return keys;
  }

  /** Every job ended once; done jobs' images are each stored once, listed once, and nothing else is stored. */
  async function checkEverything(): Promise<Map<string, Record<string, any>>> {
    const statuses = new Map<string, Record<string, any>>();
    for (const { jobId } of asked) statuses.set(jobId, await waitForJob(server, jobId, 300_000));
    const doneKeys: string[] = [];
    for (const { jobId, count, round, point } of asked) {
      const status = statuses.get(jobId)!;
      const which = `job ${jobId} of round ${round} (${point})`;
      expect(["done", "failed"], which).toContain(status.status);
      if (status.status === "failed") {
        expect(status.error.code, which).toMatch(/\S/);
        expect(status.error.message, which).toMatch(/\S/);
        continue;
      }
      expect(status.images, which).toHaveLength(count);
      doneKeys.push(...status.images.map((image: { key: string }) => image.key));
    }
    expect(new Set(doneKeys).size).toBe(doneKeys.length);
    const stored = await bucketKeys();
    expect(stored.filter((key) => key.endsWith(".png")).sort()).toEqual([...doneKeys].sort());
    expect(stored.filter((key) => key.endsWith(".json")).sort()).toEqual(doneKeys.map((key) => key.replace(/\.png$/, ".json")).sort());
    expect((await allImagesListed()).sort()).toEqual([...doneKeys].sort());
    // A finished job leaves nothing behind in staging.
    const doneIds = new Set(asked.filter(({ jobId }) => statuses.get(jobId)!.status === "done").map(({ jobId }) => jobId));
    const staging = path.join(home.home, "staging");
    expect((existsSync(staging) ? readdirSync(staging) : []).filter((name) => doneIds.has(name.split(".")[0]!))).toEqual([]);
    return statuses;
  }

  async function checkSidecars(statuses: Map<string, Record<string, any>>): Promise<void> {
    for (const [jobId, status] of statuses) {
      for (const { key } of status.images ?? []) {
        const object = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: key.replace(/\.png$/, ".json") }));
        expect(JSON.parse(await object.Body!.transformToString()).jobId, key).toBe(jobId);
      }
    }
  }

  it(`${ROUNDS} rounds of kill -9 (queued, runner starting, mid-denoise, storing, indexing): each job done once or failed with a reason, no orphan runner`, async () => {
    console.log(`kill rounds seed ${SEED} (replay with KITTY_KILL_SEED=${SEED})`);
    const random = seededRandom(SEED);
    // Each point equally often, in a seeded order, so no point goes untested by chance.
    const plan: KillPoint[] = Array.from({ length: ROUNDS }, (_, index) => KILL_POINTS[index % KILL_POINTS.length]!);
    for (let index = plan.length - 1; index > 0; index--) {
      const other = Math.floor(random() * (index + 1));
      [plan[index], plan[other]] = [plan[other]!, plan[index]!];
    }
    const tally = new Map<KillPoint, RoundTally>(KILL_POINTS.map((point) => [point, { rounds: 0, jobs: 0, done: 0, failed: 0, runnersExited: 0, seconds: [] }]));
    const startedAt = Date.now();

    for (const [index, point] of plan.entries()) {
      const round = index + 1;
      const roundStart = Date.now();
      const firstJob = asked.length;
      const seen = await reach(round, point, random);
      const reachedAt = Date.now();
      const runners = childPids(server.pid);
      expect(runners.length, `round ${round}: the server has a runner to orphan`).toBeGreaterThan(0);
      process.kill(server.pid, "SIGKILL");
      await server.close();
      release();

      server = await startServer(home, s3Env(minio, BUCKET));
      const restartedAt = Date.now();
      // The runner sees its stdin hang up, even while torch still imports, and exits on its own.
      await waitUntil(`round ${round}: the killed server's runner(s) ${runners.join(", ")} have exited`, () => !runners.some(isAlive), { timeoutMs: 20_000, intervalMs: 100 });
      const orphansGoneAt = Date.now();
      const statuses = await checkEverything();

      const roundJobs = asked.slice(firstJob);
      const entry = tally.get(point)!;
      entry.rounds++;
      entry.jobs += roundJobs.length;
      entry.done += roundJobs.filter(({ jobId }) => statuses.get(jobId)!.status === "done").length;
      entry.failed += roundJobs.filter(({ jobId }) => statuses.get(jobId)!.status === "failed").length;
      entry.runnersExited += runners.length;
      entry.seconds.push((Date.now() - roundStart) / 1000);
      const seconds = (from: number, to: number) => ((to - from) / 1000).toFixed(1);
      console.log(
        `round ${String(round).padStart(2)} ${point.padEnd(15)} killed at: ${seen}; ${runners.length} runner(s) exited; ` +
          `${seconds(roundStart, Date.now())} s (reach ${seconds(roundStart, reachedAt)}, restart ${seconds(reachedAt, restartedAt)}, ` +
          `orphans gone ${seconds(restartedAt, orphansGoneAt)}, settle ${seconds(orphansGoneAt, Date.now())})`,
      );
    }

    await checkSidecars(await checkEverything());
    console.log(tallyTable(tally, (Date.now() - startedAt) / 1000));
    passed = true;
  }, 1_200_000);
});
