import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import Database from "better-sqlite3";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { s3ClientFor, startMinio, type MinioServer } from "../helpers/minio.js";
import { readPng } from "../helpers/png.js";
import { childPids, makeTestHome, s3Env, startServer, waitForJob, type RunningServer, type TestHome } from "../helpers/server.js";
import { planSoak, seededRandom, type SoakEvent } from "../helpers/soakPlan.js";
import { errorText } from "../helpers/toolCalls.js";
import { waitUntil } from "../helpers/waitUntil.js";

const JOB_COUNT = Number(process.env.KITTY_SOAK_JOBS ?? 300);
const SEED = Number(process.env.KITTY_SOAK_SEED ?? 20260125);
const SIZE = 256; // the smallest size the tools take
const TERMINAL = ["done", "failed", "cancelled"];

/** Runs `work` over `items`, `width` at a time. */
async function inParallel<T>(items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
}

describe("a soak: hundreds of tiny jobs through cancels, runner kills and a MinIO restart", () => {
  let minio: MinioServer;
  let s3: S3Client;
  let home: TestHome;
  let server: RunningServer;
  const bucket = "kitty-soak";

  beforeAll(async () => {
    minio = await startMinio();
    s3 = s3ClientFor(minio);
    home = await makeTestHome(inject("tinyModelsDir"));
    // One torch thread: tiny models gain nothing from more, and beside other runners on a shared 2-core machine
    // two spin-waiting threads per process made jobs 20-30 times slower (this soak: 445-510 s, against 75-90 s with one).
    server = await startServer(home, { ...s3Env(minio, bucket), OMP_NUM_THREADS: "1" });
  });

  afterAll(async () => {
    await server?.close();
    s3?.destroy();
    await minio?.stop();
  });

  const statusOf = (jobId: string) => server.ok("job_status", { jobId });

  /** Polls a job until `ready` holds; a job that ends first is the driver falling behind, which voids the event. */
  async function waitForRun(jobId: string, what: string, ready: (status: Record<string, any>) => boolean, allowEnded = false) {
    return waitUntil(`job ${jobId} ${what}`, async () => {
      const status = await statusOf(jobId);
      if (TERMINAL.includes(status.status) && !allowEnded) throw new Error(`job ${jobId} ended ${status.status} before the driver saw it ${what}`);
      return (ready(status) || TERMINAL.includes(status.status)) && status;
    }, { timeoutMs: 300_000, intervalMs: 20 });
  }
  const hasStepped = (status: Record<string, any>) => status.status === "running" && status.progress?.step > 0;

  async function bucketPngKeys(): Promise<string[]> {
    const keys: string[] = [];
    let token: string | undefined;
    do {
      const page = await s3.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
      keys.push(...(page.Contents ?? []).map((object) => object.Key!).filter((key) => key.endsWith(".png")));
      token = page.NextContinuationToken;
    } while (token);
    return keys;
  }

  it(`${JOB_COUNT} jobs: done + failed + cancelled add up, killed jobs get their retry, every done image downloads and is listed once`, async () => {
    const plan = planSoak(JOB_COUNT, seededRandom(SEED));
    const faultsAt = (kind: SoakEvent["kind"]) => plan.events.filter((event) => event.kind === kind).map((event) => `#${event.trigger}`).join(", ");
    console.log(
      `soak: seed ${SEED} (replay with KITTY_SOAK_SEED=${SEED}), ${JOB_COUNT} jobs (KITTY_SOAK_JOBS); ` +
        `runner killed during jobs ${faultsAt("kill_runner")}, MinIO restarted during job ${faultsAt("restart_minio")}`,
    );
    const startedAt = Date.now();
    const jobIds: string[] = [];
    for (const [index, steps] of plan.steps.entries()) {
      const queued = await server.ok("generate_image", { prompt: `soak ${index}`, model: "tiny_sd15", width: SIZE, height: SIZE, steps, seed: index });
      jobIds.push(queued.jobId);
    }
    // The last job is never an event's target: its job_status carries the queue's notice while storage is down.
    const lastJob = jobIds.at(-1)!;

    const killed = new Set<string>();
    const cancelledWhileQueued = new Set<string>();
    const cancelledWhileRunning = new Set<string>();
    const cancelsTooLate = new Set<string>();
    const runEvent = async (event: SoakEvent) => {
      const triggerId = jobIds[event.trigger]!;
      if (event.kind === "kill_runner") {
        await waitForRun(triggerId, "reports a step", hasStepped);
        const [runnerPid] = await waitUntil("the runner is up", () => childPids(server.pid).length > 0 && childPids(server.pid), { timeoutMs: 60_000, intervalMs: 50 });
        process.kill(runnerPid!, "SIGKILL");
        killed.add(triggerId);
      } else if (event.kind === "restart_minio") {
        await waitForRun(triggerId, "is running or has ended", (status) => status.status === "running", true);
        await minio.pause();
        try {
          // Down until the server has met the outage (a finished image waiting to upload), then back on the same port and data.
          await waitUntil("the queue reports storage down", async () => /storage is unavailable/.test((await statusOf(lastJob)).notice ?? ""), { timeoutMs: 120_000, intervalMs: 50 });
        } finally {
          await minio.resume();
        }
      } else if (event.kind === "cancel_running") {
        await waitForRun(triggerId, "reports a step", hasStepped);
        // It may finish between that look and the cancel: then it is refused as ended, and counted apart.
        const answer = await server.call("cancel_job", { jobId: triggerId });
        if (answer.isError) {
          expect(errorText(answer)).toMatch(/invalid_state: job \S+ is already done/);
          cancelsTooLate.add(triggerId);
        } else {
          cancelledWhileRunning.add(triggerId);
        }
      } else {
        await waitForRun(triggerId, "is running or has ended", (status) => status.status === "running", true);
        const targetId = jobIds[event.target]!;
        expect((await statusOf(targetId)).status, `job #${event.target} is still queued when it is cancelled`).toBe("queued");
        expect((await server.ok("cancel_job", { jobId: targetId })).status).toBe("cancelled");
        cancelledWhileQueued.add(targetId);
      }
    };
    for (const event of plan.events) await runEvent(event);

    const final = new Map<string, Record<string, any>>();
    for (const jobId of jobIds) final.set(jobId, await waitForJob(server, jobId, 300_000));
    const wallSeconds = (Date.now() - startedAt) / 1000;
    const byState = (state: string) => jobIds.filter((jobId) => final.get(jobId)!.status === state);
    const [done, failed, cancelled] = [byState("done"), byState("failed"), byState("cancelled")];
    console.log(
      `soak: ${done.length} done, ${failed.length} failed, ${cancelled.length} cancelled of ${JOB_COUNT}; ` +
        `cancels ${cancelledWhileQueued.size} while queued, ${cancelledWhileRunning.size} while running, ${cancelsTooLate.size} too late; ` +
        `${killed.size} runner kills, 1 MinIO restart; ${wallSeconds.toFixed(1)} s, ${((JOB_COUNT / wallSeconds) * 60).toFixed(1)} jobs/min`,
    );
    for (const jobId of failed) console.log(`soak: failed ${jobId}: ${JSON.stringify(final.get(jobId)!.error)}`);

    expect(done.length + failed.length + cancelled.length).toBe(JOB_COUNT);
    expect(new Set(cancelled)).toEqual(new Set([...cancelledWhileQueued, ...cancelledWhileRunning]));
    for (const jobId of failed) expect(final.get(jobId)!.error, jobId).toMatchObject({ code: expect.any(String), message: expect.stringMatching(/\S/) });
    // A killed runner costs its job the one retry, and only that job: the MinIO restart is waited out in place.
    const db = new Database(path.join(home.home, "kitty-images.sqlite"), { readonly: true });
    const attempts = new Map((db.prepare(`SELECT id, attempts FROM jobs`).all() as Array<{ id: string; attempts: number }>).map((row) => [row.id, row.attempts]));
    db.close();
    for (const jobId of killed) {
      expect(final.get(jobId)!.status, `job ${jobId} hit by the runner kill`).toBe("done");
      expect(attempts.get(jobId), `job ${jobId} hit by the runner kill`).toBe(2);
    }
    expect(jobIds.filter((jobId) => !killed.has(jobId) && attempts.get(jobId)! > 1), "jobs run more than once").toEqual([]);

    const doneKeys = done.map((jobId) => final.get(jobId)!.images[0].key as string);
    expect(new Set(doneKeys).size).toBe(done.length);
    await inParallel(doneKeys, 6, async (key) => {
      const { imageRef } = await server.ok("select_image", { key });
      const response = await fetch(imageRef.downloadUrl);
      expect(response.status, key).toBe(200);
      const png = readPng(Buffer.from(await response.arrayBuffer())); // throws on a bad signature
      expect([png.width, png.height], key).toEqual([SIZE, SIZE]);
    });

    const listed: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await server.ok("list_latest_images", { limit: 200, ...(cursor && { cursor }) });
      listed.push(...page.images.map((image: { key: string }) => image.key));
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(listed.length, "each image listed once").toBe(new Set(listed).size);
    expect([...listed].sort()).toEqual([...doneKeys].sort());
    const stored = new Set(await bucketPngKeys());
    expect(doneKeys.filter((key) => !stored.has(key)), "done images missing from the bucket").toEqual([]);
  }, 900_000);
});
