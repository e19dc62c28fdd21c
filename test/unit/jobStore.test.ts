import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../helpers/paths.js";
import { openDatabase, type Db } from "../../src/db/sqlite/database.js";
import { JobStore } from "../../src/db/sqlite/jobs.js";
import { jobStoreContract, type StoreUnderTest } from "../contracts/jobStoreContract.js";
import { makeRequest } from "../helpers/requests.js";

const request = (prompt: string) => makeRequest({ prompt });

describe("JobStore on a real SQLite file: what only SQLite needs proven", () => {
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

  it("survives reopening the file: the queue is durable", () => {
    const a = jobs.enqueue(request("durable"));
    db.close();
    db = openDatabase(path.join(dir, "jobs.sqlite"));
    jobs = new JobStore(db);
    expect(jobs.get(a.id)).toMatchObject({ state: "queued", request: request("durable") });
  });

  it("never lets two processes take the same job, with four taking from one file at once", async () => {
    const ids = Array.from({ length: 200 }, (_, n) => jobs.enqueue(request(`job ${n}`)).id);
    const storeModule = pathToFileURL(path.join(PROJECT_ROOT, "dist/db/sqlite/jobs.js")).href;
    const dbModule = pathToFileURL(path.join(PROJECT_ROOT, "dist/db/sqlite/database.js")).href;
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

});

describe("JobStore (SQLite)", () => {
  let dir: string;
  let db: Db;
  let store: StoreUnderTest;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "kitty-jobs-"));
    db = openDatabase(path.join(dir, "jobs.sqlite"));
    const jobs = new JobStore(db);
    const addRow = (jobId: string, key: string) => () =>
      db.prepare(`INSERT INTO images (key, job_id, created_at, prompt, model, width, height, seed, metadata) VALUES (?, ?, ?, 'p', 'm', 1, 1, 1, '{}')`).run(key, jobId, new Date().toISOString());
    store = {
      jobs,
      completeWithImage: async (jobId, attempt, key) => jobs.complete(jobId, attempt, addRow(jobId, key)),
      imageCount: async () => (db.prepare(`SELECT COUNT(*) AS n FROM images`).get() as { n: number }).n,
    };
  });

  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  jobStoreContract("SQLite", () => store);
});
