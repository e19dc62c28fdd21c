// Volume: list_latest_images(36) with 1k, 10k and 100k indexed images (time should stay flat in N), beside listing
// a bucket the way the original images-service did (ListObjectsV2 sweep + sort) at 1k and 10k objects when a
// MinIO is given; enqueue throughput into the SQLite queue, and the process's RSS with 10k queued jobs.
//
//   node bench/volume.mjs [--minio-bin .cache/bin/minio]
//
// Runs on the built modules (dist/); prints medians and the ratios to read.
import { CreateBucketCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from "@aws-sdk/client-s3";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { "minio-bin": { type: "string", default: path.join(root, ".cache", "bin", "minio") } } });
const { openDatabase } = await import(path.join(root, "dist/db/sqlite/database.js"));
const { ImageIndex } = await import(path.join(root, "dist/db/sqlite/images.js"));
const { JobStore } = await import(path.join(root, "dist/db/sqlite/jobs.js"));

const median = (numbers) => [...numbers].sort((a, b) => a - b)[Math.floor(numbers.length / 2)];
const time = (run, times = 50) => median(Array.from({ length: times }, () => { const started = performance.now(); run(); return performance.now() - started; }));
const request = { prompt: "volume", negativePrompt: null, model: { name: "m", path: "/m", refinerPath: null }, width: 512, height: 512, steps: 4, cfgScale: 7, seed: 1, scheduler: null, refiner: null };

/** An index holding `count` images, filled in one transaction per 10k rows. */
function indexWith(count) {
  const db = openDatabase(path.join(mkdtempSync(path.join(tmpdir(), "kitty-volume-")), "kitty.sqlite"));
  const jobs = db.prepare(`INSERT INTO jobs (id, state, request, created_at) VALUES (?, 'done', '{}', ?)`);
  const index = new ImageIndex(db);
  for (let start = 0; start < count; start += 10_000) {
    db.transaction(() => {
      for (let n = start; n < Math.min(count, start + 10_000); n++) {
        const createdAt = new Date(Date.UTC(2026, 0, 1) + n * 1000).toISOString();
        jobs.run(`job-${n}`, createdAt);
        index.add({ key: `images/${String(n).padStart(8, "0")}.png`, jobId: `job-${n}`, createdAt, prompt: `image ${n}`, model: "m", width: 512, height: 512, seed: n, metadata: { n } });
      }
    })();
  }
  return { db, index };
}

console.log(`volume, Node ${process.version}; medians in milliseconds`);
const listing = {};
for (const count of [1_000, 10_000, 100_000]) {
  const { db, index } = indexWith(count);
  listing[count] = time(() => index.latest(36));
  const cursor = index.latest(36).nextCursor;
  const nextPage = time(() => index.latest(36, cursor));
  console.log(`  list_latest_images(36), ${String(count).padStart(7)} images: first page ${listing[count].toFixed(3)}, next page ${nextPage.toFixed(3)}`);
  db.close();
}
console.log(`  100k / 1k (goal <= 1.5): ${(listing[100_000] / listing[1_000]).toFixed(2)}x`);

{
  const db = openDatabase(path.join(mkdtempSync(path.join(tmpdir(), "kitty-volume-")), "kitty.sqlite"));
  const jobs = new JobStore(db);
  const before = process.memoryUsage().rss;
  const started = performance.now();
  for (let n = 0; n < 10_000; n++) jobs.enqueue(request);
  const seconds = (performance.now() - started) / 1000;
  console.log(`  enqueue: ${(10_000 / seconds).toFixed(0)} jobs/s (goal >= 2,000), one transaction each, as generate_image does`);
  console.log(`  RSS with 10k queued jobs: ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB (grew ${((process.memoryUsage().rss - before) / 2 ** 20).toFixed(1)} MiB)`);
  db.close();
}

if (existsSync(values["minio-bin"])) {
  const port = await new Promise((resolve) => { const server = createServer().listen(0, "127.0.0.1", () => { const { port } = server.address(); server.close(() => resolve(port)); }); });
  const data = mkdtempSync(path.join(tmpdir(), "kitty-volume-minio-"));
  const minio = spawn(values["minio-bin"], ["server", data, "--address", `127.0.0.1:${port}`, "--quiet"], { env: { ...process.env, MINIO_ROOT_USER: "volumebench", MINIO_ROOT_PASSWORD: "volumebench-secret" }, stdio: "ignore" });
  const s3 = new S3Client({ endpoint: `http://127.0.0.1:${port}`, region: "us-east-1", forcePathStyle: true, credentials: { accessKeyId: "volumebench", secretAccessKey: "volumebench-secret" } });
  try {
    for (let tries = 0; ; tries++) {
      try { await s3.send(new CreateBucketCommand({ Bucket: "volume" })); break; } catch (error) { if (tries > 100) throw error; await new Promise((resolve) => setTimeout(resolve, 200)); }
    }
    let stored = 0;
    for (const count of [1_000, 10_000]) {
      const keys = Array.from({ length: count - stored }, (_, n) => `images/${String(stored + n).padStart(8, "0")}.png`);
      for (let start = 0; start < keys.length; start += 64) {
        await Promise.all(keys.slice(start, start + 64).map((Key) => s3.send(new PutObjectCommand({ Bucket: "volume", Key, Body: "png" }))));
      }
      stored = count;
      // The original: list everything under the prefix, sort by LastModified, keep the newest 36.
      const sweeps = [];
      for (let run = 0; run < 5; run++) {
        const started = performance.now();
        const all = [];
        let ContinuationToken;
        do {
          const page = await s3.send(new ListObjectsV2Command({ Bucket: "volume", Prefix: "images/", ContinuationToken }));
          all.push(...(page.Contents ?? []));
          ContinuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
        } while (ContinuationToken);
        all.sort((a, b) => b.LastModified - a.LastModified).slice(0, 36);
        sweeps.push(performance.now() - started);
      }
      console.log(`  bucket sweep + sort (the original), ${String(count).padStart(6)} objects: ${median(sweeps).toFixed(1)}; index: ${listing[count].toFixed(3)} (${(median(sweeps) / listing[count]).toFixed(0)}x)`);
    }
  } finally {
    s3.destroy();
    minio.kill();
  }
} else {
  console.log(`  (no MinIO at ${values["minio-bin"]}: bucket sweep skipped; bash scripts/setup-minio.sh builds it)`);
}
