// Full-size SD 1.5 (random weights, real configs): a warm job through the real server next to bare pipe(), one run.
//
//   node bench/full-size.mjs [--jobs 3] [--size 512] [--steps 4] [--warmup-steps 1] [--guidance 7.5] [--model DIR]
//
// The model folder (.cache/bench-models/sd15-full, ~4 GB) is built once by bench/sd15_full.py and reused. Two
// processes stay up side by side, each with the pipeline loaded once: bench/sd15_full.py serve (bare pipe()) and
// `node dist/cli.js serve` (MCP over stdio -> SQLite queue -> runner -> PNG -> storage -> index). After one warm-up
// each, their timed runs alternate (A B B A A B ...), so drift on a shared machine falls on both alike. Prints the
// medians, the ratio warm end-to-end / bare pipe() (the goal is <= 1.03) and, from the sidecars, how much of the
// job was the runner's own pipe() and PNG save; also the median of the pairs' ratios, fastest / fastest, CPU seconds
// per image, and how much of the machine other processes took during each run (from /proc): on a shared machine
// only the quiet pairs' ratio means much. Exits 1 if the runner loaded the model more than once.
import { Client } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { execa } from "execa";
import { spawn } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir } from "node:os";
import path from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const python = process.env.KITTY_IMAGES_PYTHON ?? path.join(root, ".cache", "venv", "bin", "python");
const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "3" },
    size: { type: "string", default: "512" },
    steps: { type: "string", default: "4" },
    "warmup-steps": { type: "string", default: "1" },
    guidance: { type: "string", default: "7.5" },
    model: { type: "string", default: path.join(root, ".cache", "bench-models", "sd15-full") },
  },
});
const [jobs, size, steps, warmupSteps, guidance] = ["jobs", "size", "steps", "warmup-steps", "guidance"].map((key) => Number(values[key]));
const model = path.resolve(values.model);
const QUIET = 0.05; // a pair counts as quiet when other processes used under 5% of the machine during both runs
const median = (numbers) => [...numbers].sort((a, b) => a - b)[Math.floor(numbers.length / 2)];
const pyEnv = { PYTHONPATH: path.join(root, "python"), HF_HUB_OFFLINE: "1", PATH: process.env.PATH, KITTY_IMAGES_DEVICE: "cpu" };
const clock = () => new Date().toTimeString().slice(0, 8);
const say = (line) => console.error(`[full-size ${clock()}] ${line}`);

await execa(python, [path.join(root, "bench", "sd15_full.py"), "build", model], { env: pyEnv, stdout: "inherit", stderr: "inherit" });

// CPU accounting from /proc (Linux), so a run that shared the CPUs with other work can be told apart: CPU time is
// what each process used itself, and the machine's busy time minus ours is what everything else took meanwhile.
const TICK = 100; // USER_HZ: clock ticks per second in /proc, 100 on Linux
const procCpu = (pid) => {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
    return (Number(fields[11]) + Number(fields[12])) / TICK; // utime + stime
  } catch {
    return 0;
  }
};
const machineBusy = () => {
  try {
    const [, ...ticks] = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).map(Number);
    return (ticks.slice(0, 8).reduce((a, b) => a + b, 0) - ticks[3] - ticks[4]) / TICK; // all but idle and iowait
  } catch {
    return 0;
  }
};
const childrenOf = (pid) => {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) => readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number));
  } catch {
    return [];
  }
};
let benchPids = () => []; // every process of this benchmark, once they are up
/** Times `fn` and the CPU seconds that `pids()` used in it, and what the rest of the machine used meanwhile. */
async function measured(pids, fn) {
  const all = () => [...new Set([process.pid, ...benchPids(), ...pids()])];
  const before = { busy: machineBusy(), ours: all().map(procCpu).reduce((a, b) => a + b, 0), each: pids().map(procCpu) };
  const started = performance.now();
  const value = await fn();
  const seconds = (performance.now() - started) / 1000;
  const ours = all().map(procCpu).reduce((a, b) => a + b, 0) - before.ours;
  const each = pids().map((pid, i) => procCpu(pid) - (before.each[i] ?? 0)); // per process, in pids() order
  const cpu = each.reduce((a, b) => a + b, 0);
  const others = Math.max(0, machineBusy() - before.busy - ours);
  return { value, seconds, cpu, each, othersShare: others / (seconds * cpus().length) };
}

/** bench/sd15_full.py serve: one JSON line per run asked for. */
function startBare() {
  const child = spawn(python, [path.join(root, "bench", "sd15_full.py"), "serve", model], { env: pyEnv, stdio: ["pipe", "pipe", "ignore"] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error("bench/sd15_full.py serve exited");
    return JSON.parse(value);
  };
  return {
    pid: child.pid,
    ready: next(),
    async run(seed, runSteps) {
      child.stdin.write(JSON.stringify({ seed, size, steps: runSteps, guidance }) + "\n");
      return (await next()).seconds;
    },
    close: () => child.stdin.end(),
  };
}

const work = await mkdtemp(path.join(tmpdir(), "kitty-bench-full-"));
let bare;
let client;
try {
  bare = startBare();
  const ready = await bare.ready;
  await writeFile(path.join(work, "models.yaml"), `sd15_full: ${model}\n`);
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [path.join(root, "dist", "cli.js"), "serve"],
    env: { ...pyEnv, HOME: work, KITTY_IMAGES_HOME: path.join(work, "home"), MODELS_YAML: path.join(work, "models.yaml"), KITTY_IMAGES_LOG_LEVEL: "warn" },
    stderr: "ignore",
  });
  client = new Client({ name: "bench-full-size", version: "0" });
  await client.connect(transport);
  const runJob = async (seed, jobSteps) => {
    // The bare side runs the folder's own scheduler (PNDM); the server's SD 1.5 default is euler_a, so name it.
    const args = { prompt: "a red cube", width: size, height: size, steps: jobSteps, cfg_scale: guidance, seed, scheduler: "pndm" };
    const queued = await client.callTool({ name: "generate_image", arguments: args });
    if (queued.isError) throw new Error(JSON.stringify(queued.content));
    for (;;) {
      const status = (await client.callTool({ name: "job_status", arguments: { jobId: queued.structuredContent.jobId, wait_seconds: 50 } })).structuredContent;
      if (status.status === "done") {
        return JSON.parse(await readFile(path.join(work, "home", "files", status.images[0].key.replace(/\.png$/, ".json")), "utf8"));
      }
      if (status.status !== "queued" && status.status !== "running") throw new Error(JSON.stringify(status));
    }
  };

  say(`warm-ups (${warmupSteps} step${warmupSteps === 1 ? "" : "s"}): bare pipe(), then the server's first job (runner start + load)`);
  const bareWarmup = await bare.run(0, warmupSteps);
  const first = await measured(() => [], () => runJob(0, warmupSteps));
  say(`warm-ups took ${bareWarmup.toFixed(1)} s (bare) and ${first.seconds.toFixed(1)} s (first job)`);
  // The job's CPU is the server's and the runner's (the server's one child), both counted.
  const servicePids = () => (transport.pid ? [transport.pid, ...childrenOf(transport.pid)] : []);
  benchPids = () => [bare.pid, ...servicePids()];

  const bareRuns = [];
  const jobRuns = [];
  const pct = (share) => `${(100 * share).toFixed(0)}%`;
  for (let i = 1; i <= jobs; i++) {
    const bareFirst = i % 4 === 1 || i % 4 === 0; // A B, B A, A B, B A ...
    for (const side of bareFirst ? ["bare", "job"] : ["job", "bare"]) {
      if (side === "bare") bareRuns.push(await measured(() => [bare.pid], () => bare.run(i, steps)));
      else jobRuns.push(await measured(servicePids, () => runJob(i, steps)));
    }
    const [b, j] = [bareRuns.at(-1), jobRuns.at(-1)];
    say(`pair ${i}/${jobs}: bare ${b.seconds.toFixed(2)} s (${b.cpu.toFixed(1)} CPU s), job ${j.seconds.toFixed(2)} s (${j.cpu.toFixed(1)} CPU s: server ${j.each[0].toFixed(1)}, runner ${(j.cpu - j.each[0]).toFixed(1)}): ${(j.seconds / b.seconds).toFixed(3)}x; ` +
      `other processes used ${pct(b.othersShare)} / ${pct(j.othersShare)} of the CPUs meanwhile`);
  }
  const bareTimes = bareRuns.map((run) => run.seconds);
  const jobTimes = jobRuns.map((run) => run.seconds);
  const sidecars = jobRuns.map((run) => run.value);
  const quiet = bareRuns.map((b, i) => [b, jobRuns[i]]).filter(([b, j]) => b.othersShare < QUIET && j.othersShare < QUIET);

  const last = sidecars.at(-1);
  const bareMedian = median(bareTimes);
  const e2e = median(jobTimes);
  const runnerPipe = median(sidecars.map((s) => s.timings.inferenceSeconds));
  const runnerSave = median(sidecars.map((s) => s.timings.saveSeconds));
  const row = (label, text) => console.log(`  ${label.padEnd(62)} ${text}`);
  console.log(
    `SD 1.5 full size (UNet ${(ready.params.unet / 1e6).toFixed(1)}M, VAE ${(ready.params.vae / 1e6).toFixed(1)}M, text encoder ${(ready.params.text_encoder / 1e6).toFixed(1)}M params, random weights), ` +
      `${size}x${size}, ${steps} steps, guidance ${guidance}, PNDM, device ${last.device} (${last.dtype}), ${cpus().length} CPUs, torch threads ${ready.threads}, ${jobs} pairs after one warm-up each; medians in seconds`,
  );
  row("bare pipe(), pipeline loaded once", bareMedian.toFixed(3));
  row("kitty-images job, warm (MCP -> queue -> runner -> storage)", e2e.toFixed(3));
  row("  of which the runner's pipe() (prompt encoding + denoise + VAE)", runnerPipe.toFixed(3));
  row("  of which the runner's PNG save", runnerSave.toFixed(3));
  row("  the rest: server, queue, protocol, storage, index, polling", (e2e - runnerPipe - runnerSave).toFixed(3));
  row("kitty-images first job (runner start + load + warm-up steps)", first.seconds.toFixed(3));
  row("warm end-to-end / bare pipe()   (goal <= 1.03)", `${(e2e / bareMedian).toFixed(3)}x`);
  row("median of the pairs' ratios (job / bare, run next to each other)", `${median(jobTimes.map((t, i) => t / bareTimes[i])).toFixed(3)}x`);
  row("fastest job / fastest bare pipe() (other load on the machine only adds)", `${(Math.min(...jobTimes) / Math.min(...bareTimes)).toFixed(3)}x`);
  row("CPU seconds per image: job (server + runner) / bare", `${median(jobRuns.map((r) => r.cpu)).toFixed(1)} / ${median(bareRuns.map((r) => r.cpu)).toFixed(1)} = ${(median(jobRuns.map((r) => r.cpu)) / median(bareRuns.map((r) => r.cpu))).toFixed(3)}x`);
  row(`other processes' share of the CPUs during the timed runs`, `median ${pct(median([...bareRuns, ...jobRuns].map((r) => r.othersShare)))}, max ${pct(Math.max(...[...bareRuns, ...jobRuns].map((r) => r.othersShare)))}`);
  row(`quiet pairs (others under ${pct(QUIET)} in both): ${quiet.length} of ${jobs}; median ratio`, quiet.length ? `${median(quiet.map(([b, j]) => j.seconds / b.seconds)).toFixed(3)}x` : "none");
  row(`model loads over ${jobs + 1} jobs`, String(last.modelLoads));
  if (last.modelLoads !== 1) process.exitCode = 1;
} finally {
  await client?.close().catch(() => {});
  bare?.close();
  await rm(work, { recursive: true, force: true });
}
