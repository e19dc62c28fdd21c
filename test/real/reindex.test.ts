import { PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { s3ClientFor, startMinio, type MinioServer } from "../helpers/minio.js";
import { SERVER_ENTRY } from "../helpers/paths.js";
import { makePng } from "../helpers/png.js";
import { makeTestHome, s3Env, serverEnv, startServer, type RunningServer } from "../helpers/server.js";

const PAIRS = 1_100; // 2,200 objects: ListObjectsV2 hands them out in three pages
const PNG_ONLY = 5;

/** Runs `tasks` with at most `width` in flight. */
async function inBatches(tasks: Array<() => Promise<unknown>>, width: number): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < tasks.length) await tasks[next++]!();
  }));
}

describe("kitty-images reindex against MinIO", () => {
  let minio: MinioServer;
  let s3: S3Client;
  let server: RunningServer | undefined;
  const bucket = "kitty-reindex";

  beforeAll(async () => {
    minio = await startMinio();
    s3 = s3ClientFor(minio);
    await s3.send(new (await import("@aws-sdk/client-s3")).CreateBucketCommand({ Bucket: bucket }));
    const png = makePng(64, 64);
    const put = (Key: string, Body: Buffer | string, ContentType: string) => () => s3.send(new PutObjectCommand({ Bucket: bucket, Key, Body, ContentType }));
    const tasks: Array<() => Promise<unknown>> = [];
    for (let n = 0; n < PAIRS; n++) {
      const key = `images/20261101_${String(n).padStart(6, "0")}_${n.toString(16).padStart(8, "0")}.png`;
      const sidecar = { key, jobId: `bulk-${n}`, createdAt: new Date(Date.UTC(2026, 10, 1) + n * 1000).toISOString(), engine: "diffusers", model: "tiny_sd15", family: "sd15", request: { prompt: `bulk ${n}`, model: "tiny_sd15" }, seed: n, width: 64, height: 64, scheduler: "euler_a", device: "cpu", versions: {}, timings: { loadSeconds: 0, inferenceSeconds: 0, saveSeconds: 0 }, modelLoads: 1, stepsRun: 4 };
      tasks.push(put(key, png, "image/png"), put(key.replace(/\.png$/, ".json"), JSON.stringify(sidecar), "application/json"));
    }
    for (let n = 0; n < PNG_ONLY; n++) {
      tasks.push(put(`images/imported/loose-${n}.png`, makePng(48, 32, { "kitty-images": JSON.stringify({ prompt: `loose ${n}`, model: "sdxl_base", seed: n }) }), "image/png"));
    }
    // Two uploads with their sidecars, and one cut short (its sidecar never went up): left out.
    for (const n of [1, 2]) {
      const key = `uploads/${String(n).repeat(32)}.png`;
      const sidecar = { kind: "upload", key, createdAt: new Date(Date.UTC(2026, 10, 2) + n).toISOString(), width: 64, height: 64, format: "PNG", bytes: png.length, sha256: String(n).repeat(64), pngBytes: png.length, origin: { from: "data" } };
      tasks.push(put(key, png, "image/png"), put(key.replace(/\.png$/, ".json"), JSON.stringify(sidecar), "application/json"));
    }
    tasks.push(put(`uploads/${"9".repeat(32)}.png`, png, "image/png"));
    await inBatches(tasks, 24);
  });

  afterAll(async () => {
    await server?.close();
    s3?.destroy();
    await minio?.stop();
  });

  it("rebuilds a lost index from thousands of objects, page after page, and runs again harmlessly while a server serves", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const env = { ...serverEnv(home, s3Env(minio, bucket)), KITTY_IMAGES_LOG_LEVEL: "warn" };
    const first = await execa(process.execPath, [SERVER_ENTRY, "reindex"], { env, extendEnv: false, reject: false, timeout: 300_000 });
    expect(first.exitCode, first.stderr).toBe(0);
    expect(JSON.parse(first.stdout)).toEqual({ scanned: PAIRS + PNG_ONLY, added: PAIRS + PNG_ONLY, alreadyIndexed: 0, withoutSidecar: PNG_ONLY, unreadable: 0, uploadsAdded: 2 });
    expect(first.stderr).toContain("an upload without its sidecar was left unindexed");

    server = await startServer(home, s3Env(minio, bucket));
    const keys = new Set<string>();
    let cursor: string | undefined;
    do {
      const page = await server.ok("list_latest_images", { limit: 200, ...(cursor && { cursor }) });
      for (const image of page.images) keys.add(image.key);
      cursor = page.nextCursor ?? undefined;
    } while (cursor);
    expect(keys.size).toBe(PAIRS + PNG_ONLY);
    const loose = await server.ok("select_image", { key: "images/imported/loose-3.png" });
    expect(loose.metadata).toMatchObject({ prompt: "loose 3", model: "sdxl_base", width: 48, height: 32, source: "png" });
    const bulk = await server.ok("job_status", { jobId: "bulk-7" });
    expect(bulk).toMatchObject({ status: "done", images: [{ key: "images/20261101_000007_00000007.png" }] });

    const again = await execa(process.execPath, [SERVER_ENTRY, "reindex"], { env, extendEnv: false, reject: false, timeout: 300_000 });
    expect(again.exitCode, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ scanned: PAIRS + PNG_ONLY, added: 0, alreadyIndexed: PAIRS + PNG_ONLY, uploadsAdded: 0 });
    // A reindexed upload is a start image again, by its key.
    const queued = await server.ok("generate_image", { prompt: "from an upload", model: "tiny_sd15", steps: 1, init_image: `uploads/${"1".repeat(32)}.png`, strength: 1 });
    expect(queued).toMatchObject({ status: "queued", width: 256, height: 256 });
  });
});
