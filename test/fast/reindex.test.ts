import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { openSqliteQueue } from "../../src/db/sqlite/store.js";
import { reindex } from "../../src/queue/reindex.js";
import { LocalImageStore } from "../../src/storage/local.js";
import { buildSidecar } from "../../src/images/sidecar.js";
import { makePng } from "../helpers/png.js";
import { makeRequest } from "../helpers/requests.js";

const RESULT = { width: 320, height: 256, seed: 9, family: "sd15", scheduler: "euler_a", device: "mps", dtype: "float32", options: {}, modelLoads: 1, stepsRun: 4, promptTokens: 2, timings: { loadSeconds: 0, inferenceSeconds: 1, saveSeconds: 0 }, versions: {} };

describe("reindex rebuilds the image index from the local folder", () => {
  it("indexes sidecars as stored, PNGs without one from their own chunks, skips junk, and is idempotent", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "kitty-reindex-"));
    const store = new LocalImageStore(path.join(dir, "files"));
    const png = path.join(dir, "source.png");
    writeFileSync(png, makePng(320, 256));
    const stored: string[] = [];
    for (const n of [1, 2, 3]) {
      const key = `images/2026112${n}_120000_0000000${n}.png`;
      await store.put(key, png, buildSidecar({ key, jobId: `job-${n}`, engine: "diffusers", pngBytes: 99, createdAt: new Date(Date.UTC(2026, 10, 20 + n)) }, makeRequest({ prompt: `stored ${n}` }), RESULT));
      stored.push(key);
    }
    mkdirSync(path.join(dir, "files", "images", "imported"), { recursive: true });
    writeFileSync(path.join(dir, "files", "images", "imported", "ours.png"), makePng(64, 48, { "kitty-images": JSON.stringify({ prompt: "a lost sidecar", model: "sdxl_base", seed: 77 }) }));
    writeFileSync(path.join(dir, "files", "images", "imported", "a1111.png"), makePng(32, 32, { parameters: "a castle at dusk\nNegative prompt: blur\nSteps: 20, Seed: 5" }));
    writeFileSync(path.join(dir, "files", "images", "broken.png"), "not a png");
    writeFileSync(path.join(dir, "files", "images", "notes.txt"), "ignored");

    // A fresh database, as after losing the SQLite file.
    const queue = openSqliteQueue(path.join(dir, "fresh.sqlite"));
    const { jobs, images: index } = queue;
    const deps = { jobs, images: index, store, keyPrefix: "images/", log: pino({ level: "silent" }) };
    expect(await reindex(deps)).toEqual({ scanned: 6, added: 5, alreadyIndexed: 0, withoutSidecar: 2, unreadable: 1, uploadsAdded: 0 });

    // Newest first by the sidecar's time; a PNG without one is as new as its file.
    const listed = (await index.latest(10)).images.map((image) => image.key);
    expect(listed.filter((key) => stored.includes(key))).toEqual([...stored].reverse());
    expect(listed.slice(0, 2).sort()).toEqual(["images/imported/a1111.png", "images/imported/ours.png"]);
    expect(await index.byKey(stored[0]!)).toMatchObject({ jobId: "job-1", prompt: "stored 1", width: 320, height: 256, seed: 9, metadata: { device: "mps", pngBytes: 99 } });
    expect(await jobs.get("job-1")).toMatchObject({ state: "done", imageKey: stored[0], request: { prompt: "stored 1", model: { name: "m" }, width: 320 } });
    expect(await index.byKey("images/imported/ours.png")).toMatchObject({ prompt: "a lost sidecar", model: "sdxl_base", seed: 77, width: 64, height: 48, metadata: { source: "png" } });
    expect(await index.byKey("images/imported/a1111.png")).toMatchObject({ prompt: "a castle at dusk", width: 32, height: 32 });

    expect(await reindex(deps)).toEqual({ scanned: 6, added: 0, alreadyIndexed: 5, withoutSidecar: 0, unreadable: 1, uploadsAdded: 0 });
    queue.close();
  });
});
