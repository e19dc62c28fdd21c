import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../helpers/paths.js";
import { openDatabase, type Db } from "../../src/db.js";
import { JobStore, JobTakenOver } from "../../src/queue/jobStore.js";
import { makeRequest } from "../helpers/requests.js";

const request = (prompt: string) => makeRequest({ prompt });

describe("JobStore on a real SQLite file", () => {
  let dir: string;
  let db: Db;
  let jobs: JobStore;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "kitty-jobs-"));
    db = openDatabase(path.join(dir, "jobs.sqlite"));
    jobs = new JobStore(db);
  });

  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("uses WAL journaling", () => {
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
  });

  it("hands out jobs first in, first out, and reports positions", () => {
    const a = jobs.enqueue(request("a"));
    const b = jobs.enqueue(request("b"));
    const c = jobs.enqueue(request("c"));
    expect([a, b, c].map((job) => jobs.position(job))).toEqual([1, 2, 3]);
    expect(jobs.takeNext()?.id).toBe(a.id);
    expect(jobs.position(jobs.get(c.id)!)).toBe(2);
    expect(jobs.takeNext()?.id).toBe(b.id);
    expect(jobs.takeNext()?.id).toBe(c.id);
    expect(jobs.takeNext()).toBeUndefined();
  });

  it("survives reopening the file: the queue is durable", () => {
    const a = jobs.enqueue(request("durable"));
    db.close();
    db = openDatabase(path.join(dir, "jobs.sqlite"));
    jobs = new JobStore(db);
    expect(jobs.get(a.id)).toMatchObject({ state: "queued", request: request("durable") });
  });

  it("never lets two processes take the same job, with four taking from one file at once", async () => {
    const ids = Array.from({ length: 200 }, (_, n) => jobs.enqueue(request(`job ${n}`)).id);
    const storeModule = pathToFileURL(path.join(PROJECT_ROOT, "dist/queue/jobStore.js")).href;
    const dbModule = pathToFileURL(path.join(PROJECT_ROOT, "dist/db.js")).href;
    const takerScript = `
      const { JobStore } = await import(${JSON.stringify(storeModule)});
      const { openDatabase } = await import(${JSON.stringify(dbModule)});
      const jobs = new JobStore(openDatabase(process.argv[1]));
      while (Date.now() < Number(process.argv[2])) {} // all four start taking at the same moment
      const taken = [];
      for (let job; (job = jobs.takeNext()); ) taken.push(job.id);
      process.stdout.write(JSON.stringify(taken));`;
    const startAt = String(Date.now() + 2000);
    const takers = await Promise.all(
      [1, 2, 3, 4].map(() => execa(process.execPath, ["--input-type=module", "-e", takerScript, path.join(dir, "jobs.sqlite"), startAt])),
    );
    const perTaker = takers.map((taker) => JSON.parse(taker.stdout) as string[]);
    expect(perTaker.flat().sort()).toEqual([...ids].sort());
    expect(perTaker.filter((taken) => taken.length > 0).length).toBeGreaterThan(1);
  });

  it("fences a run that lost its job: a stale attempt can neither finish nor requeue it", () => {
    const job = jobs.enqueue(request("fenced"));
    jobs.takeNext();
    jobs.recoverInterrupted(); // another process took the lease and put it back
    jobs.takeNext(); // and runs it as attempt 2
    expect(jobs.finish(job.id, "running", "done", { attempt: 1 })).toBe(false);
    expect(jobs.requeue(job.id, { attempt: 1 })).toBe(false);
    expect(jobs.finish(job.id, "running", "done", { attempt: 2 })).toBe(true);
  });

  it("finishes only from the state it expects", () => {
    const job = jobs.enqueue(request("x"));
    expect(jobs.finish(job.id, "running", "done")).toBe(false);
    jobs.takeNext();
    expect(jobs.finish(job.id, "running", "done")).toBe(true);
    expect(jobs.finish(job.id, "running", "failed")).toBe(false);
    expect(jobs.get(job.id)?.state).toBe("done");
  });

  it("refuses a transition the state machine does not allow", () => {
    const job = jobs.enqueue(request("x"));
    expect(() => jobs.finish(job.id, "queued", "done")).toThrow(/forbids queued -> done/);
  });

  it("resumes a job cut off mid-run once, then fails it as interrupted", () => {
    const job = jobs.enqueue(request("crashy"));
    jobs.takeNext();
    expect(jobs.recoverInterrupted()).toEqual({ resumed: [job.id], failed: [] });
    expect(jobs.get(job.id)).toMatchObject({ state: "queued", attempts: 1 });
    jobs.takeNext();
    expect(jobs.recoverInterrupted()).toEqual({ resumed: [], failed: [job.id] });
    expect(jobs.get(job.id)).toMatchObject({ state: "failed", error: { code: "interrupted" } });
  });

  it("passes a cancel mark to the running job, and a job cut off after a cancel ends cancelled, not resumed", () => {
    const job = jobs.enqueue(request("stop me"));
    expect(jobs.requestCancel(job.id)).toBe(false);
    jobs.takeNext();
    jobs.setProgress(job.id, 1, 3, 30);
    expect(jobs.get(job.id)?.progress).toEqual({ step: 3, totalSteps: 30 });
    expect(jobs.requestCancel(job.id)).toBe(true);
    expect(jobs.isCancelRequested(job.id)).toBe(true);
    jobs.recoverInterrupted();
    expect(jobs.get(job.id)?.state).toBe("cancelled");
  });

  it("keeps a job's place in line when it is put back", () => {
    const a = jobs.enqueue(request("a"));
    jobs.enqueue(request("b"));
    jobs.takeNext();
    jobs.requeue(a.id, { countAttempt: false });
    expect(jobs.get(a.id)).toMatchObject({ state: "queued", attempts: 0 });
    expect(jobs.takeNext()?.id).toBe(a.id);
  });

  it("fixes the image key on the first run and keeps it on a retry", () => {
    const job = jobs.enqueue(request("k"));
    expect(jobs.fixImageKey(job.id, "images/first.png")).toBe("images/first.png");
    expect(jobs.fixImageKey(job.id, "images/second.png")).toBe("images/first.png");
  });

  it("never moves a job out of a terminal state: an ended job cannot be finished, requeued, cancelled or taken", () => {
    const ended = (["done", "failed", "cancelled"] as const).map((to) => {
      const job = jobs.enqueue(request(to));
      jobs.takeNext();
      expect(jobs.finish(job.id, "running", to)).toBe(true);
      return job.id;
    });
    for (const jobId of ended) {
      const before = jobs.get(jobId)!;
      expect(() => jobs.finish(jobId, before.state, "failed")).toThrow(/job state machine forbids/);
      expect(jobs.finish(jobId, "running", "done")).toBe(false);
      expect(jobs.requeue(jobId)).toBe(false);
      expect(jobs.requestCancel(jobId)).toBe(false);
      expect(jobs.get(jobId)).toEqual(before);
    }
    expect(jobs.takeNext()).toBeUndefined();
  });

  it("records a done job and its index row together, or neither when another run holds the job", () => {
    const job = jobs.enqueue(request("together"));
    jobs.takeNext();
    jobs.recoverInterrupted();
    jobs.takeNext(); // attempt 2 holds it now
    const written: string[] = [];
    const addRow = () => {
      db.prepare(`INSERT INTO images (key, job_id, created_at, prompt, model, width, height, seed, metadata) VALUES (?, ?, ?, 'p', 'm', 1, 1, 1, '{}')`).run(
        `images/${written.length}.png`,
        job.id,
        new Date().toISOString(),
      );
      written.push("row");
    };
    expect(() => jobs.complete(job.id, 1, addRow)).toThrow(JobTakenOver);
    expect(db.prepare(`SELECT COUNT(*) AS n FROM images`).get()).toEqual({ n: 0 });
    jobs.complete(job.id, 2, addRow);
    expect(db.prepare(`SELECT COUNT(*) AS n FROM images`).get()).toEqual({ n: 1 });
    expect(jobs.get(job.id)?.state).toBe("done");
  });

  it("announces each change once it is made: enqueued, progress, cancel requested, ended", () => {
    const seen: string[] = [];
    for (const name of ["enqueued", "progress", "cancelRequested", "ended"] as const) jobs.events.on(name, (jobId) => seen.push(`${name} ${jobId}`));
    const job = jobs.enqueue(request("announced"));
    jobs.takeNext();
    jobs.setProgress(job.id, 1, 1, 4);
    jobs.setProgress(job.id, 7, 2, 4); // a stale attempt changes nothing and announces nothing
    jobs.requestCancel(job.id);
    jobs.finish(job.id, "running", "cancelled");
    jobs.finish(job.id, "running", "cancelled"); // a no-op announces nothing
    expect(seen).toEqual([`enqueued ${job.id}`, `progress ${job.id}`, `cancelRequested ${job.id}`, `ended ${job.id}`]);
  });
});
