import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { execa } from "execa";
import { pathToFileURL } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../helpers/paths.js";
import { openDatabase, type Db } from "../../src/db/sqlite/database.js";
import { SqliteImageIndex } from "../../src/db/sqlite/images.js";
import { SqliteJobStore } from "../../src/db/sqlite/jobs.js";
import { jobStoreContract, type StoreUnderTest } from "../contracts/jobStoreContract.js";
import { makeRequest } from "../helpers/requests.js";

const request = (prompt: string) => makeRequest({ prompt });

describe("SqliteJobStore on a real SQLite file: what only SQLite needs proven", () => {
  let dir: string;
  let db: Db;
  let jobs: SqliteJobStore;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "kitty-jobs-"));
    db = openDatabase(path.join(dir, "jobs.sqlite"));
    jobs = new SqliteJobStore(db, new SqliteImageIndex(db));
  });

  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("uses WAL journaling", () => {
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
  });

  it("survives reopening the file: the queue is durable", async () => {
    const a = await jobs.enqueue(request("durable"));
    db.close();
    db = openDatabase(path.join(dir, "jobs.sqlite"));
    jobs = new SqliteJobStore(db, new SqliteImageIndex(db));
    expect(await jobs.get(a.id)).toMatchObject({ state: "queued", request: request("durable") });
  });

  it("never lets two processes take the same job, with four taking from one file at once", async () => {
    const ids: string[] = [];
    for (let n = 0; n < 200; n++) ids.push((await jobs.enqueue(request(`job ${n}`))).id);
    const storeModule = pathToFileURL(path.join(PROJECT_ROOT, "dist/db/sqlite/jobs.js")).href;
    const dbModule = pathToFileURL(path.join(PROJECT_ROOT, "dist/db/sqlite/database.js")).href;
    const indexModule = pathToFileURL(path.join(PROJECT_ROOT, "dist/db/sqlite/images.js")).href;
    const takerScript = `
      const { SqliteJobStore } = await import(${JSON.stringify(storeModule)});
      const { SqliteImageIndex } = await import(${JSON.stringify(indexModule)});
      const { openDatabase } = await import(${JSON.stringify(dbModule)});
      const db = openDatabase(process.argv[1]);
      const jobs = new SqliteJobStore(db, new SqliteImageIndex(db));
      // All four start taking at the same moment: each says it is ready, then waits for the word on stdin.
      process.stdout.write("ready\\n");
      await new Promise((resolve) => process.stdin.once("data", resolve));
      const taken = [];
      for (let job; (job = await jobs.takeNext()); ) taken.push(job.id);
      process.stdout.write(JSON.stringify(taken));`;
    const takers = [1, 2, 3, 4].map(() => execa(process.execPath, ["--input-type=module", "-e", takerScript, path.join(dir, "jobs.sqlite")]));
    await Promise.all(takers.map((taker) => new Promise<void>((resolve) => taker.stdout!.once("data", () => resolve()))));
    for (const taker of takers) taker.stdin!.end("go\n");
    const perTaker = (await Promise.all(takers)).map((taker) => JSON.parse(taker.stdout.replace(/^ready\n/, "")) as string[]);
    expect(perTaker.flat().sort()).toEqual([...ids].sort());
    expect(perTaker.filter((taken) => taken.length > 0).length).toBeGreaterThan(1);
  });

});

describe("SqliteJobStore", () => {
  let dir: string;
  let db: Db;
  let store: StoreUnderTest;

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "kitty-jobs-"));
    db = openDatabase(path.join(dir, "jobs.sqlite"));
    const images = new SqliteImageIndex(db);
    store = { jobs: new SqliteJobStore(db, images), images };
  });

  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  jobStoreContract("SQLite", () => store);
});
