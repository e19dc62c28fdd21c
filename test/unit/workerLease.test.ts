import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../../src/db/sqlite/database.js";
import { JobStore } from "../../src/db/sqlite/jobs.js";
import { WorkerLease } from "../../src/db/sqlite/lease.js";

const twoProcessesOnOneFile = () => {
  const file = path.join(mkdtempSync(path.join(tmpdir(), "kitty-lease-")), "q.sqlite");
  return [openDatabase(file), openDatabase(file)] as const;
};

describe("WorkerLease: one process runs the queue", () => {
  it("goes to the first taker and is refused to a second while the first heartbeats", () => {
    const [a, b] = twoProcessesOnOneFile();
    const first = new WorkerLease(a, 10_000);
    const second = new WorkerLease(b, 10_000);
    expect(first.tryAcquire(1000)).toBe(true);
    expect(second.tryAcquire(2000)).toBe(false);
    expect(first.heartbeat(9000)).toBe(true);
    expect(second.tryAcquire(15_000)).toBe(false);
    expect(first.tryAcquire(16_000)).toBe(true);
  });

  it("passes to another process when the holder stops heartbeating", () => {
    const [a, b] = twoProcessesOnOneFile();
    const first = new WorkerLease(a, 10_000);
    const second = new WorkerLease(b, 10_000);
    first.tryAcquire(1000);
    expect(second.tryAcquire(11_001)).toBe(true);
    expect(first.heartbeat(11_002)).toBe(false);
  });

  it("judges a holder on another host by its heartbeat alone, since its pid means nothing here", () => {
    const [a, b] = twoProcessesOnOneFile();
    const deadPidHere = spawnSync(process.execPath, ["-e", "0"]).pid!;
    const elsewhere = new WorkerLease(a, 60_000, deadPidHere, "other-host");
    const local = new WorkerLease(b, 60_000);
    expect(elsewhere.tryAcquire(1000)).toBe(true);
    expect(local.tryAcquire(2000)).toBe(false);
    expect(local.tryAcquire(62_000)).toBe(true);
  });

  it("passes at once when the holder's process is gone (kill -9)", () => {
    const [a, b] = twoProcessesOnOneFile();
    const deadPid = spawnSync(process.execPath, ["-e", "0"]).pid!;
    const crashed = new WorkerLease(a, 60_000, deadPid);
    const survivor = new WorkerLease(b, 60_000);
    expect(crashed.tryAcquire(1000)).toBe(true);
    expect(survivor.tryAcquire(1001)).toBe(true);
    expect(survivor.holder()?.pid).toBe(process.pid);
  });

  it("gates taking jobs: a process that lost the lease cannot start one", () => {
    const [a, b] = twoProcessesOnOneFile();
    const staleHolder = new WorkerLease(a, 10_000);
    const newHolder = new WorkerLease(b, 10_000);
    staleHolder.tryAcquire(1000);
    new JobStore(a).enqueue({ prompt: "p", negativePrompt: null, model: { name: "m", path: "/m", refinerPath: null }, width: 512, height: 512, steps: 1, cfgScale: 7, seed: 1, scheduler: null, refiner: null });
    expect(newHolder.tryAcquire(20_000)).toBe(true);
    expect(new JobStore(a).takeNext(staleHolder.owner)).toBeUndefined();
    expect(new JobStore(b).takeNext(newHolder.owner)).toMatchObject({ state: "running" });
  });

  it("is free again once released", () => {
    const [a, b] = twoProcessesOnOneFile();
    const first = new WorkerLease(a);
    const second = new WorkerLease(b);
    first.tryAcquire();
    first.release();
    expect(second.tryAcquire()).toBe(true);
  });
});
