import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../../src/db/sqlite/database.js";
import { SqliteImageIndex } from "../../src/db/sqlite/images.js";
import { SqliteJobStore } from "../../src/db/sqlite/jobs.js";
import { SqliteLease } from "../../src/db/sqlite/lease.js";

const twoProcessesOnOneFile = () => {
  const file = path.join(mkdtempSync(path.join(tmpdir(), "kitty-lease-")), "q.sqlite");
  return [openDatabase(file), openDatabase(file)] as const;
};

describe("SqliteLease: one process runs the queue", () => {
  it("goes to the first taker and is refused to a second while the first heartbeats", async () => {
    const [a, b] = twoProcessesOnOneFile();
    const first = new SqliteLease(a, 10_000);
    const second = new SqliteLease(b, 10_000);
    expect(await first.tryAcquire(1000)).toBe(true);
    expect(await second.tryAcquire(2000)).toBe(false);
    expect(await first.heartbeat(9000)).toBe(true);
    expect(await second.tryAcquire(15_000)).toBe(false);
    expect(await first.tryAcquire(16_000)).toBe(true);
  });

  it("passes to another process when the holder stops heartbeating", async () => {
    const [a, b] = twoProcessesOnOneFile();
    const first = new SqliteLease(a, 10_000);
    const second = new SqliteLease(b, 10_000);
    await first.tryAcquire(1000);
    expect(await second.tryAcquire(11_001)).toBe(true);
    expect(await first.heartbeat(11_002)).toBe(false);
  });

  it("judges a holder on another host by its heartbeat alone, since its pid means nothing here", async () => {
    const [a, b] = twoProcessesOnOneFile();
    const deadPidHere = spawnSync(process.execPath, ["-e", "0"]).pid!;
    const elsewhere = new SqliteLease(a, 60_000, deadPidHere, "other-host");
    const local = new SqliteLease(b, 60_000);
    expect(await elsewhere.tryAcquire(1000)).toBe(true);
    expect(await local.tryAcquire(2000)).toBe(false);
    expect(await local.tryAcquire(62_000)).toBe(true);
  });

  it("passes at once when the holder's process is gone (kill -9)", async () => {
    const [a, b] = twoProcessesOnOneFile();
    const deadPid = spawnSync(process.execPath, ["-e", "0"]).pid!;
    const crashed = new SqliteLease(a, 60_000, deadPid);
    const survivor = new SqliteLease(b, 60_000);
    expect(await crashed.tryAcquire(1000)).toBe(true);
    expect(await survivor.tryAcquire(1001)).toBe(true);
    expect((await survivor.holder())?.pid).toBe(process.pid);
  });

  it("gates taking jobs: a process that lost the lease cannot start one", async () => {
    const [a, b] = twoProcessesOnOneFile();
    const staleHolder = new SqliteLease(a, 10_000);
    const newHolder = new SqliteLease(b, 10_000);
    await staleHolder.tryAcquire(1000);
    const jobsOf = (db: typeof a) => new SqliteJobStore(db, new SqliteImageIndex(db));
    await jobsOf(a).enqueue({ prompt: "p", negativePrompt: null, model: { name: "m", path: "/m", refinerPath: null }, width: 512, height: 512, steps: 1, cfgScale: 7, seed: 1, scheduler: null, refiner: null });
    expect(await newHolder.tryAcquire(20_000)).toBe(true);
    expect(await jobsOf(a).takeNext({ leaseOwner: staleHolder.owner })).toBeUndefined();
    expect(await jobsOf(b).takeNext({ leaseOwner: newHolder.owner })).toMatchObject({ state: "running" });
  });

  it("is free again once released", async () => {
    const [a, b] = twoProcessesOnOneFile();
    const first = new SqliteLease(a);
    const second = new SqliteLease(b);
    await first.tryAcquire();
    await first.release();
    expect(await second.tryAcquire()).toBe(true);
  });
});
