import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { DiffusersEngine, type DiffusersEngineOptions } from "../../src/engines/diffusers.js";
import type { GenerationJob } from "../../src/engines/engine.js";
import { makeRequest } from "../helpers/requests.js";
import { waitUntil } from "../helpers/waitUntil.js";

/**
 * How the behaviour in a runner file is chosen: a test rewrites it, and the next runner started reads it (as a venv
 * repaired between two starts). ready: says ready, then answers each job with an error event; crash-on-job: exits
 * on a job; silent: never answers a job (hung); never-ready: waits, alive, without saying ready; exit: dies at once.
 */
type RunnerBehaviour = "ready" | "crash-on-job" | "silent" | "never-ready" | "exit";

const READY = { type: "ready", device: "cpu", dtype: "float32", versions: { python: "3", torch: "2", diffusers: "0", transformers: "5" }, pid: 1 };

/** A stand-in for `python -m diffusers_runner` (the supervisor is the subject here): a Node script, behaving as its file says. */
function fakeRunner(dir: string): { python: string; behave(behaviour: RunnerBehaviour): void; spawned(): boolean } {
  const modeFile = path.join(dir, "mode");
  const spawnedFile = path.join(dir, "spawned");
  const python = path.join(dir, "runner");
  writeFileSync(
    python,
    `#!${process.execPath}
const fs = require("fs");
fs.appendFileSync(${JSON.stringify(spawnedFile)}, process.pid + "\\n");
const mode = fs.readFileSync(${JSON.stringify(modeFile)}, "utf8");
const out = (event) => process.stdout.write(JSON.stringify(event) + "\\n");
if (mode === "exit") { process.stderr.write("ModuleNotFoundError: No module named 'torch'\\n"); process.exit(1); }
if (mode === "never-ready") setInterval(() => undefined, 1000);
else out(${JSON.stringify(READY)});
require("readline").createInterface({ input: process.stdin }).on("line", (line) => {
  const request = JSON.parse(line);
  if (request.type === "shutdown") process.exit(0);
  if (request.type !== "generate") return;
  if (mode === "crash-on-job") process.exit(3);
  if (mode === "ready") out({ type: "error", jobId: request.jobId, code: "out_of_memory", message: "the stand-in answers every job so" });
});
`,
  );
  chmodSync(python, 0o755);
  return { python, behave: (behaviour) => writeFileSync(modeFile, behaviour), spawned: () => existsSync(spawnedFile) };
}

function job(jobId: string): GenerationJob {
  return { jobId, outputPaths: [`/tmp/${jobId}.png`], previewPaths: [], initImagePath: null, onProgress: () => undefined, signal: new AbortController().signal };
}

/** What a generate() ended with: its error's code, or "done". */
async function outcome(promise: Promise<unknown>): Promise<string> {
  return promise.then(
    () => "done",
    (error: { code?: string }) => error.code ?? String(error),
  );
}

describe("the diffusers engine's runner supervisor: start, crash, hang, broken, release and stop", () => {
  const dirs: string[] = [];
  const engines: DiffusersEngine[] = [];
  afterEach(async () => {
    for (const engine of engines.splice(0)) await engine.stop();
    for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  });

  function setUp(behaviour: RunnerBehaviour, options: Partial<DiffusersEngineOptions> = {}) {
    const dir = mkdtempSync(path.join(tmpdir(), "kitty-supervisor-"));
    dirs.push(dir);
    const runner = fakeRunner(dir);
    runner.behave(behaviour);
    const engine = new DiffusersEngine(
      {
        python: runner.python,
        packageDir: dir,
        env: { PATH: process.env.PATH ?? "" },
        readyTimeoutMs: 20_000,
        jobDeadline: { baseMs: 20_000, msPerMegapixelStep: 0 },
        startAttempts: 2,
        brokenRetryMs: 60_000,
        ...options,
      },
      pino({ level: "silent" }),
    );
    engines.push(engine);
    return { engine, runner };
  }

  it("is idle until started, ready once the runner says so, idle again once released, and stopped for good", async () => {
    const { engine } = setUp("ready");
    expect(engine.health()).toEqual({ state: "idle", restarts: 0 });
    const started = engine.start();
    expect(engine.health().state).toBe("starting");
    await started;
    expect(engine.health()).toEqual({ state: "ready", restarts: 0, device: "cpu" });
    expect(await outcome(engine.generate(makeRequest(), job("j1")))).toBe("out_of_memory");
    await engine.release();
    expect(engine.health()).toEqual({ state: "idle", restarts: 0, device: "cpu" });
    // The next job starts it again.
    expect(await outcome(engine.generate(makeRequest(), job("j2")))).toBe("out_of_memory");
    expect(engine.health().state).toBe("ready");
    await engine.stop();
    expect(engine.health()).toEqual({ state: "stopped", restarts: 0, device: "cpu" });
    expect(await outcome(engine.generate(makeRequest(), job("j3")))).toBe("engine_unavailable");
    await expect(engine.start()).rejects.toThrow("the server is shutting down");
  });

  it("counts a runner that dies on its own as a restart and starts another for the next job", async () => {
    const { engine, runner } = setUp("crash-on-job");
    await engine.start();
    const crashed = await engine.generate(makeRequest(), job("j1")).catch((error: unknown) => error);
    expect(crashed).toMatchObject({ code: "runner_crashed", retryable: true });
    await waitUntil("the crash is counted", () => engine.health().restarts === 1);
    expect(engine.health().state).toBe("idle");
    runner.behave("ready");
    expect(await outcome(engine.generate(makeRequest(), job("j2")))).toBe("out_of_memory");
    expect(engine.health()).toMatchObject({ state: "ready", restarts: 1 });
  });

  it("kills a runner silent past the job's deadline, counts it, and starts a fresh one for the next job", async () => {
    const { engine, runner } = setUp("silent", { jobDeadline: { baseMs: 50, msPerMegapixelStep: 0 } });
    await engine.start();
    const hung = await engine.generate(makeRequest(), job("j1")).catch((error: unknown) => error);
    expect(hung).toMatchObject({ code: "runner_hung", retryable: true, message: expect.stringContaining("within the job's deadline of 0.05s") });
    // Not alive from the deadline on, before its exit is seen: no job goes to it.
    expect(engine.health().state).toBe("idle");
    await waitUntil("the hung runner's exit is counted", () => engine.health().restarts === 1);
    runner.behave("ready");
    expect(await outcome(engine.generate(makeRequest(), job("j2")))).toBe("out_of_memory");
    expect(engine.health()).toMatchObject({ state: "ready", restarts: 1 });
  });

  it("after startAttempts failed starts in a row is broken: jobs fail at once with the fix until a later try starts it", async () => {
    const { engine, runner } = setUp("exit", { brokenRetryMs: 100 });
    // The first failure is the worker's to wait out; it says why.
    const first = await engine.start().catch((error: unknown) => error);
    expect(first).toMatchObject({ code: "engine_unavailable", retryable: true, message: expect.stringMatching(/exited before it was ready \(exit code 1\)[^]*No module named 'torch'/) });
    expect(engine.health().state).toBe("idle");
    const second = await engine.start().catch((error: unknown) => error);
    expect(second).toMatchObject({ code: "runner_broken", retryable: false, message: expect.stringMatching(/^the diffusers runner failed to start 2 times in a row, so jobs fail until it is fixed; the server stays up and tries it again every 0\.1s\. Last failure: the diffusers runner exited before it was ready/) });
    expect(engine.health().state).toBe("broken");
    // Before the retry time: refused at once, no runner started.
    expect(await engine.start().catch((error: unknown) => error)).toBe(second);
    // A try after the rest that fails again stays broken, counting on.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const third = await engine.start().catch((error: unknown) => error);
    expect(third).toMatchObject({ code: "runner_broken", message: expect.stringContaining("failed to start 3 times in a row") });
    // Runners that died before they were ready are failed starts, counted as such, not restarts.
    expect(engine.health()).toEqual({ state: "broken", restarts: 0 });
    // Repaired: the next try after the rest starts it.
    runner.behave("ready");
    await new Promise((resolve) => setTimeout(resolve, 100));
    await engine.start();
    expect(engine.health()).toMatchObject({ state: "ready", device: "cpu" });
    // Starts that fail after a good one count from one again.
    runner.behave("exit");
    await engine.release();
    expect(await engine.start().catch((error: unknown) => error)).toMatchObject({ code: "engine_unavailable" });
    expect(engine.health().state).toBe("idle");
  });

  it("counts as broken a runner that never becomes ready, killed at its ready timeout", async () => {
    const { engine } = setUp("never-ready", { readyTimeoutMs: 100, startAttempts: 1 });
    const failed = await engine.start().catch((error: unknown) => error);
    expect(failed).toMatchObject({ code: "runner_broken", message: expect.stringContaining("the diffusers runner did not become ready in 0.1s") });
    expect(engine.health().state).toBe("broken");
  });

  it("lets go of a runner still starting when released or stopped: no failed start, no restart", async () => {
    const { engine, runner } = setUp("never-ready", { startAttempts: 1 });
    const started = engine.start().catch((error: unknown) => error);
    await waitUntil("the runner's process is up", () => runner.spawned());
    await engine.release();
    expect(await started).toMatchObject({ code: "engine_unavailable", message: expect.stringContaining("signal SIGKILL") });
    expect(engine.health()).toEqual({ state: "idle", restarts: 0 });

    rmSync(path.join(runner.python, "..", "spawned"));
    const again = engine.start().catch((error: unknown) => error);
    await waitUntil("the next runner's process is up", () => runner.spawned());
    await engine.stop();
    expect(await again).toMatchObject({ code: "engine_unavailable" });
    expect(engine.health()).toEqual({ state: "stopped", restarts: 0 });
  });

  it("stops a runner that was still loading its supervisor when stopped, once it is up", async () => {
    const { engine } = setUp("ready");
    const started = engine.start();
    await engine.stop();
    // It comes up, and is stopped at once: nothing is left running, nothing counted.
    const runner = await started.then(() => null, (error: unknown) => error);
    expect(runner).toBeNull();
    expect(engine.health()).toEqual({ state: "stopped", restarts: 0, device: "cpu" });
  });
});
