import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { openDatabase, type Db } from "../../src/db.js";
import type { GenerationRequest } from "../../src/engines/engine.js";
import { canTransition, JOB_STATES, TRANSITIONS } from "../../src/queue/jobStates.js";
import { JobStore } from "../../src/queue/jobStore.js";

const request = (prompt: string): GenerationRequest => ({
  prompt,
  negativePrompt: null,
  model: { name: "m", path: "/models/m", refinerPath: null },
  width: 512,
  height: 512,
  steps: 4,
  cfgScale: 7,
  seed: 1,
  scheduler: null,
  refiner: null,
});

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

  it("never lets two stores take the same job", () => {
    const other = new JobStore(openDatabase(path.join(dir, "jobs.sqlite")));
    jobs.enqueue(request("only one"));
    const taken = [jobs.takeNext(), other.takeNext()].filter(Boolean);
    expect(taken).toHaveLength(1);
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
    jobs.setProgress(job.id, 3, 30);
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

  it("writes the state machine down with terminal states that go nowhere", () => {
    for (const state of JOB_STATES) for (const to of TRANSITIONS[state]) expect(canTransition(state, to)).toBe(true);
    expect(TRANSITIONS.done).toEqual([]);
    expect(canTransition("cancelled", "queued")).toBe(false);
  });
});
