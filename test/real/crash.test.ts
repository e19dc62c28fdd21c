import { CreateBucketCommand, DeleteBucketCommand, HeadBucketCommand, ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { existsSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { s3ClientFor, startMinio, type MinioServer } from "../helpers/minio.js";
import { waitUntil } from "../helpers/waitUntil.js";
import { childPids, isAlive, makeTestHome, s3Env, startServer, waitForJob, waitUntilRunning, type RunningServer, type TestHome } from "../helpers/server.js";

describe("faults lose no queued job and no finished image", () => {
  let minio: MinioServer;
  let s3: S3Client;
  const servers: RunningServer[] = [];

  beforeAll(async () => {
    minio = await startMinio();
    s3 = s3ClientFor(minio);
  });

  afterAll(async () => {
    for (const server of servers) await server.close();
    s3?.destroy();
    await minio?.stop();
  });

  async function start(home: TestHome, bucket: string) {
    const server = await startServer(home, s3Env(minio, bucket));
    servers.push(server);
    return server;
  }

  async function pngKeys(bucket: string): Promise<string[]> {
    const listing = await s3.send(new ListObjectsV2Command({ Bucket: bucket }));
    return (listing.Contents ?? []).map((object) => object.Key!).filter((key) => key.endsWith(".png"));
  }

  it("a job running when the server is killed -9 is resumed after restart; every queued job ends done exactly once", async () => {
    const bucket = "kitty-crash";
    const home = await makeTestHome(inject("tinyModelsDir"));
    const first = await start(home, bucket);
    const jobIds: string[] = [];
    jobIds.push((await first.ok("generate_image", { prompt: "interrupted", model: "tiny_sd15", width: 384, height: 384, steps: 30, seed: 11 })).jobId);
    for (const seed of [12, 13]) {
      jobIds.push((await first.ok("generate_image", { prompt: `waiting ${seed}`, model: "tiny_sd15", width: 256, height: 256, steps: 3, seed })).jobId);
    }
    await waitUntilRunning(first, jobIds[0]!);
    const runnerPids = childPids(first.pid);
    expect(runnerPids.length).toBeGreaterThan(0);

    process.kill(first.pid, "SIGKILL");
    await first.close();
    // The orphaned runner sees stdin close, abandons the job and exits instead of burning the GPU.
    await waitUntil("the orphaned runner has exited", () => !runnerPids.some(isAlive), { timeoutMs: 20_000, intervalMs: 100 });

    const second = await start(home, bucket);
    const statuses = [];
    for (const jobId of jobIds) statuses.push(await waitForJob(second, jobId));
    expect(statuses.map((status) => status.status)).toEqual(["done", "done", "done"]);

    const keys = statuses.map((status) => status.images[0].key as string);
    expect(new Set(keys).size).toBe(3);
    expect((await pngKeys(bucket)).sort()).toEqual([...keys].sort());
    const listing = await second.ok("list_latest_images", { limit: 10 });
    expect(listing.images.map((image: { key: string }) => image.key).sort()).toEqual([...keys].sort());
  });

  it("a job running when the server is stopped with SIGTERM is queued again, not cancelled, and finishes after restart", async () => {
    const bucket = "kitty-sigterm";
    const home = await makeTestHome(inject("tinyModelsDir"));
    const first = await start(home, bucket);
    const { jobId } = await first.ok("generate_image", { prompt: "graceful", model: "tiny_sd15", width: 384, height: 384, steps: 30, seed: 41 });
    await waitUntilRunning(first, jobId);
    process.kill(first.pid, "SIGTERM");
    await waitUntil("the server has exited after SIGTERM", () => !isAlive(first.pid), { timeoutMs: 20_000, intervalMs: 100 });
    await first.close();

    const second = await start(home, bucket);
    const status = await waitForJob(second, jobId);
    expect(status.status).toBe("done");
    expect(await pngKeys(bucket)).toEqual([status.images[0].key]);
  });

  it("a runner killed mid-job is restarted and the job runs again; the server stays up", async () => {
    const bucket = "kitty-runner-crash";
    const home = await makeTestHome(inject("tinyModelsDir"));
    const server = await start(home, bucket);
    const { jobId } = await server.ok("generate_image", { prompt: "runner dies", model: "tiny_sd15", width: 384, height: 384, steps: 30, seed: 21 });
    await waitUntilRunning(server, jobId);
    const [runnerPid] = childPids(server.pid);
    expect(runnerPid).toBeDefined();
    process.kill(runnerPid!, "SIGKILL");

    const status = await waitForJob(server, jobId);
    expect(status.status).toBe("done");
    const [newRunner] = childPids(server.pid);
    expect(newRunner).toBeDefined();
    expect(newRunner).not.toBe(runnerPid);
    expect(await pngKeys(bucket)).toEqual([status.images[0].key]);
  });

  it("an S3 outage while a job finishes delays the upload but loses nothing", async () => {
    const bucket = "kitty-outage";
    const home = await makeTestHome(inject("tinyModelsDir"));
    const server = await start(home, bucket);
    // MinIO goes down before the job starts, so even the check for an earlier upload has to wait it out.
    await minio.pause();
    const { jobId } = await server.ok("generate_image", { prompt: "storage down", model: "tiny_sd15", width: 384, height: 384, steps: 10, seed: 31 });
    try {
      // The image is generated while MinIO is down: it waits in staging and the job stays running.
      const staged = path.join(home.home, "staging", `${jobId}.png.result.json`);
      await waitUntil("the finished image waits in staging", () => existsSync(staged), { intervalMs: 100 });
      const during = await server.ok("job_status", { jobId, wait_seconds: 3 });
      expect(during.status).toBe("running");
      expect(during.notice).toMatch(/storage is unavailable/);
    } finally {
      await minio.resume();
    }
    const status = await waitForJob(server, jobId);
    expect(status.status).toBe("done");
    expect(status.notice).toBeUndefined();
    expect(await pngKeys(bucket)).toEqual([status.images[0].key]);
  });

  it("a server started while S3 is down still answers, and its jobs finish once S3 is back", async () => {
    const bucket = "kitty-late-s3";
    const home = await makeTestHome(inject("tinyModelsDir"));
    await minio.pause();
    let server: RunningServer;
    let jobId: string;
    try {
      server = await start(home, bucket);
      jobId = (await server.ok("generate_image", { prompt: "s3 comes later", model: "tiny_sd15", width: 256, height: 256, steps: 2, seed: 61 })).jobId;
      const staged = path.join(home.home, "staging", `${jobId}.png.result.json`);
      await waitUntil("the finished image waits in staging", () => existsSync(staged), { intervalMs: 100 });
      expect((await server.ok("job_status", { jobId })).status).toBe("running");
    } finally {
      await minio.resume();
    }
    // The bucket did not exist when the server started; the upload creates it.
    const status = await waitForJob(server, jobId);
    expect(status.status).toBe("done");
    expect(await pngKeys(bucket)).toEqual([status.images[0].key]);
  });

  it("storage that refuses for good fails that job, keeps its image and says where; the queue goes on", async () => {
    const bucket = "kitty-refused";
    const home = await makeTestHome(inject("tinyModelsDir"));
    const server = await start(home, bucket);
    // The server makes sure of its bucket in the background, just after it starts answering.
    await waitUntil("the server has created its bucket", () => s3.send(new HeadBucketCommand({ Bucket: bucket })).then(() => true, () => false), { timeoutMs: 10_000, intervalMs: 100 });
    await s3.send(new DeleteBucketCommand({ Bucket: bucket }));
    const { jobId } = await server.ok("generate_image", { prompt: "no bucket", model: "tiny_sd15", width: 256, height: 256, steps: 2, seed: 51 });
    const failed = await waitForJob(server, jobId);
    expect(failed).toMatchObject({ status: "failed", error: { code: "storage_refused" } });
    expect(failed.error.message).toMatch(/NoSuchBucket|bucket does not exist/i);
    const keptAt = /the image is kept at (\S+\.png)/.exec(failed.error.message)?.[1];
    expect(keptAt && existsSync(keptAt)).toBe(true);

    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
    const next = await server.ok("generate_image", { prompt: "bucket back", model: "tiny_sd15", width: 256, height: 256, steps: 2, seed: 52 });
    expect((await waitForJob(server, next.jobId)).status).toBe("done");
  });
});
