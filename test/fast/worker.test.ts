import { existsSync, readdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../../src/db/sqlite/database.js";
import { EngineJobError } from "../../src/engines/engine.js";
import { buildSidecar } from "../../src/images/sidecar.js";
import { makePng } from "../helpers/png.js";
import { makeRequest } from "../helpers/requests.js";
import { waitUntil } from "../helpers/waitUntil.js";
import { fileError, setUpWorker } from "../helpers/workerHarness.js";

describe("worker: one job's run, with a stand-in engine, the local store and a temp database", () => {
  it("runs a job to done: PNG and sidecar stored, the index holds what storage holds, staging emptied", async () => {
    const h = setUpWorker();
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest({ prompt: "stored", steps: 3, seed: 77 }));
    expect(await h.ended(job.id)).toMatchObject({ state: "done", attempts: 1, progress: { step: 3, totalSteps: 3 } });
    const image = (await h.index.ofJob(job.id))[0]!;
    const stored = await h.local.readSidecar(image.key);
    expect(stored).toMatchObject({ jobId: job.id, engine: "fake", device: "fake-device", seed: 77, request: { prompt: "stored", model: "m" } });
    expect(image).toMatchObject({ prompt: "stored", seed: 77, metadata: stored });
    expect(existsSync(path.join(h.dir, "files", image.key))).toBe(true);
    // Staging is emptied just after the job is recorded done.
    await waitUntil("staging is empty", () => readdirSync(h.staging.dir).length === 0);
  });

  it("runs strictly one job at a time, oldest first", async () => {
    const h = setUpWorker();
    const ids: string[] = [];
    for (const prompt of ["a", "b", "c", "d"]) ids.push((await h.jobs.enqueue(makeRequest({ prompt }))).id);
    h.worker.start();
    for (const jobId of ids) expect((await h.ended(jobId)).state).toBe("done");
    expect(h.engine.calls.map((request) => request.prompt)).toEqual(["a", "b", "c", "d"]);
    expect(h.engine.maxInFlight).toBe(1);
  });

  it("fails a job with the engine's code and message when the engine refuses it", async () => {
    const h = setUpWorker();
    h.engine.script.push(new EngineJobError("out_of_memory", "cpu ran out of memory at 2048x2048: try a smaller size"));
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    expect(await h.ended(job.id)).toMatchObject({ state: "failed", error: { code: "out_of_memory", message: expect.stringContaining("try a smaller size") } });
    expect(readdirSync(h.staging.dir)).toEqual([]);
  });

  it("fails a job whose engine wrote no PNG, a cut-short or damaged one, or one of another size, storing nothing; the queue goes on", async () => {
    const h = setUpWorker();
    h.engine.script.push("not-a-png", "truncated", "damaged", "wrong-size");
    h.worker.start();
    const junk = await h.jobs.enqueue(makeRequest({ prompt: "junk" }));
    const cut = await h.jobs.enqueue(makeRequest({ prompt: "cut short" }));
    const damaged = await h.jobs.enqueue(makeRequest({ prompt: "damaged" }));
    const small = await h.jobs.enqueue(makeRequest({ prompt: "half", width: 512, height: 384 }));
    const fine = await h.jobs.enqueue(makeRequest({ prompt: "fine" }));
    expect(await h.ended(junk.id)).toMatchObject({ state: "failed", error: { code: "bad_output", message: expect.stringContaining("does not start as a PNG does") } });
    expect(await h.ended(cut.id)).toMatchObject({ state: "failed", error: { code: "bad_output", message: expect.stringMatching(/is not a whole PNG .*: its IDAT chunk runs past the end of the file .*cut short; nothing was stored/) } });
    expect(await h.ended(damaged.id)).toMatchObject({ state: "failed", error: { code: "bad_output", message: expect.stringMatching(/its IDAT chunk at byte \d+ fails its CRC: damaged/) } });
    expect(await h.ended(small.id)).toMatchObject({ state: "failed", error: { code: "bad_output", message: expect.stringContaining("made a 256x384 image, not the 512x384 asked for") } });
    expect(await h.ended(fine.id)).toMatchObject({ state: "done" });
    expect(h.store.puts).toBe(1);
  });

  it("gives a job whose runner crashed one retry, then fails it with the crash's reason", async () => {
    const h = setUpWorker();
    const crash = () => new EngineJobError("runner_crashed", "the diffusers runner stopped (signal SIGKILL)", true);
    h.engine.script.push(crash(), "ok", crash(), crash());
    h.worker.start();
    const retried = await h.jobs.enqueue(makeRequest({ prompt: "crash once" }));
    expect(await h.ended(retried.id)).toMatchObject({ state: "done", attempts: 2 });
    const given = await h.jobs.enqueue(makeRequest({ prompt: "crash twice" }));
    expect(await h.ended(given.id)).toMatchObject({ state: "failed", attempts: 2, error: { code: "runner_crashed" } });
    expect(h.engine.calls).toHaveLength(4);
  });

  it("keeps a job queued, with no attempt counted and a notice saying why, while the engine cannot start", async () => {
    const h = setUpWorker();
    h.engine.unavailable = "the runner's Python is missing: run 'npm run setup'";
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    const notice = await waitUntil("the queue says why it waits", () => h.queue.waitingReason(job));
    expect(notice).toMatch(/engine is not available: the runner's Python is missing/);
    await waitUntil("the engine was tried again", () => h.engine.calls.length >= 3);
    // Between tries it is back in line (a try may be under way at any given moment), with no attempt counted.
    const between = await waitUntil("the job is back in line between tries", async () => {
      const now = await h.jobs.get(job.id);
      return now?.state === "queued" && now;
    });
    expect(between).toMatchObject({ state: "queued", attempts: 0 });
    h.engine.unavailable = null;
    expect(await h.ended(job.id)).toMatchObject({ state: "done", attempts: 1 });
    expect(await h.queue.waitingReason(job)).toBeNull();
  });

  it("retries an upload while storage is down, saying so, and finishes once it is back", async () => {
    const h = setUpWorker();
    h.store.failForever = fileError("ECONNREFUSED");
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    expect(await waitUntil("the queue says storage is down", () => h.queue.waitingReason(job))).toMatch(/storage is unavailable \(ECONNREFUSED/);
    await waitUntil("the upload was tried again", () => h.store.puts >= 3);
    h.store.failForever = null;
    expect(await h.ended(job.id)).toMatchObject({ state: "done", attempts: 1 });
    expect(await h.queue.waitingReason(job)).toBeNull();
  });

  it("records a stored job once another process lets go of the database it held locked past the busy timeout", async () => {
    const h = setUpWorker();
    h.db.pragma("busy_timeout = 20");
    const other = openDatabase(path.join(h.dir, "kitty.sqlite"));
    h.store.beforePut = () => {
      if (!other.inTransaction) other.exec("BEGIN IMMEDIATE");
    };
    const add = h.index.add.bind(h.index);
    let indexTries = 0;
    h.index.add = (record) => {
      indexTries++;
      add(record);
    };
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    // Clearing the queue's notice comes first and meets the lock too: it must not end the run.
    await waitUntil("recording the job meets the lock again and again", () => indexTries >= 3, { timeoutMs: 5_000 });
    other.exec("ROLLBACK");
    other.close();
    expect(await h.ended(job.id)).toMatchObject({ state: "done", attempts: 1 });
    expect(await h.index.ofJob(job.id)).toHaveLength(1);
  });

  it("fails a job storage refuses for good, saying where the finished PNG is kept", async () => {
    const h = setUpWorker();
    h.store.failForever = fileError("EACCES");
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest());
    const failed = await h.ended(job.id);
    expect(failed).toMatchObject({ state: "failed", error: { code: "storage_refused" } });
    expect(failed.error!.message).toContain(`the image is kept at ${h.staging.pngPath(job.id)}`);
    expect(existsSync(h.staging.pngPath(job.id))).toBe(true);
    expect(h.store.puts).toBe(1);
  });

  it("indexes what an earlier run stored before it died, without generating again", async () => {
    const h = setUpWorker();
    const { job } = await h.queue.enqueue(makeRequest({ prompt: "stored earlier" }));
    const key = await h.jobs.fixImageKey(job.id, "images/20261128_000000_earlier0.png");
    const png = path.join(h.dir, "earlier.png");
    writeFileSync(png, "png bytes");
    const result = { width: 512, height: 512, seed: 1, family: "sd15", scheduler: "euler_a", device: "mps", dtype: "float32", options: {}, modelLoads: 1, stepsRun: 4, promptTokens: 3, timings: { loadSeconds: 1, inferenceSeconds: 2, saveSeconds: 0 }, versions: { torch: "2.15.0" } };
    await h.local.put(key, png, buildSidecar({ key, jobId: job.id, engine: "diffusers" }, job.request, result));
    h.worker.start();
    expect(await h.ended(job.id)).toMatchObject({ state: "done" });
    expect(h.engine.calls).toEqual([]);
    expect((await h.index.ofJob(job.id))[0]).toMatchObject({ key, metadata: { engine: "diffusers", device: "mps", versions: { torch: "2.15.0" } } });
  });

  it("clears staged files of jobs that ended when it takes the queue, but keeps a PNG storage refused", async () => {
    const h = setUpWorker();
    const endedIds: string[] = [];
    for (const to of ["done", "failed"] as const) {
      const job = await h.jobs.enqueue(makeRequest({ prompt: to }));
      await h.jobs.takeNext();
      await h.jobs.finish(job.id, "running", to, to === "failed" ? { error: { code: "storage_refused", message: "kept" } } : {});
      endedIds.push(job.id);
    }
    await h.staging.prepare();
    for (const jobId of [...endedIds, "no-such-job"]) writeFileSync(h.staging.pngPath(jobId), "png bytes");
    h.worker.start();
    await waitUntil("staging holds only the refused PNG", async () => (await h.staging.jobIds()).join() === endedIds[1]);
  });

  it("uploads a PNG an earlier run left in staging instead of generating it again", async () => {
    const h = setUpWorker();
    const { job } = await h.queue.enqueue(makeRequest());
    await h.staging.prepare();
    writeFileSync(h.staging.pngPath(job.id), makePng(512, 512));
    await h.staging.saveResult(job.id, { width: 512, height: 512, seed: 1, family: "sdxl", scheduler: "euler", device: "cuda", dtype: "float16", options: {}, modelLoads: 1, stepsRun: 4, promptTokens: 3, timings: { loadSeconds: 0, inferenceSeconds: 1, saveSeconds: 0 }, versions: {} });
    h.worker.start();
    expect(await h.ended(job.id)).toMatchObject({ state: "done" });
    expect(h.engine.calls).toEqual([]);
    expect((await h.index.ofJob(job.id))[0]?.metadata).toMatchObject({ device: "cuda", family: "sdxl" });
  });

  it("stores a batch as one key per image, uploads a staged batch after a restart and names every kept PNG", async () => {
    const h = setUpWorker();
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest({ prompt: "three", seed: 2 ** 32 - 1, count: 3 }));
    expect(await h.ended(job.id)).toMatchObject({ state: "done" });
    const images = await h.index.ofJob(job.id);
    expect(images.map((image) => image.seed)).toEqual([2 ** 32 - 1, 0, 1]);
    const first = (await h.jobs.get(job.id))!.imageKey!;
    expect(images.map((image) => image.key)).toEqual([first, first.replace(/\.png$/, "_2.png"), first.replace(/\.png$/, "_3.png")]);
    for (const [index, image] of images.entries()) {
      expect(await h.local.readSidecar(image.key)).toMatchObject({ jobId: job.id, seed: image.seed, batch: { index, count: 3 } });
    }
    expect(h.engine.calls).toHaveLength(1);

    // A batch staged whole by an earlier run goes up without generating; one staged in part is made again.
    const staged = await h.jobs.enqueue(makeRequest({ prompt: "staged", count: 2 }));
    const partial = await h.jobs.enqueue(makeRequest({ prompt: "partial", count: 2 }));
    await h.worker.stop();
    const again = setUpWorker(h.dir);
    await again.staging.prepare();
    const result = { width: 512, height: 512, seed: 10, family: "sd15", scheduler: "euler", device: "cpu", dtype: "float32", options: {}, modelLoads: 1, stepsRun: 8, promptTokens: 1, timings: { loadSeconds: 0, inferenceSeconds: 1, saveSeconds: 0 }, versions: {} };
    for (const png of again.staging.pngPaths(staged.id, 2)) writeFileSync(png, makePng(512, 512));
    await again.staging.saveResult(staged.id, result);
    writeFileSync(again.staging.pngPath(partial.id), makePng(512, 512));
    await again.staging.saveResult(partial.id, result);
    again.worker.start();
    expect(await again.ended(staged.id)).toMatchObject({ state: "done" });
    expect(await again.ended(partial.id)).toMatchObject({ state: "done" });
    expect(again.engine.calls.map((request) => request.prompt)).toEqual(["partial"]);
    expect((await again.index.ofJob(staged.id)).map((image) => image.seed)).toEqual([10, 11]);
    await waitUntil("staging is empty", async () => (await again.staging.jobIds()).length === 0);
  });

  it("fails a batch storage refuses and says where each of its PNGs is kept", async () => {
    const h = setUpWorker();
    h.store.failForever = fileError("EACCES");
    h.worker.start();
    const { job } = await h.queue.enqueue(makeRequest({ count: 2 }));
    const failed = await h.ended(job.id);
    expect(failed).toMatchObject({ state: "failed", error: { code: "storage_refused" } });
    expect(failed.error!.message).toContain(`the images are kept at ${h.staging.pngPath(job.id)}, ${h.staging.pngPath(job.id, 1)}`);
  });
});
