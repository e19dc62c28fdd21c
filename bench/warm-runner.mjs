// Warm end-to-end cost of a job through the real server, next to bare diffusers, measured in one run.
//
//   node bench/warm-runner.mjs [--jobs 10] [--size 256] [--steps 4] [--device cpu] [--family sd15|zimage|flux|...]
//
// Prints: median seconds of (a) bare pipe() on a pipeline loaded once, (b) load + pipe() per job as the original
// images-service did, (c) a warm job through MCP -> SQLite queue -> runner -> storage -> index; the ratios c/a and
// b/c; and how many times the runner loaded a model over all jobs (must be 1).
import { Client } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { execa } from "execa";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const python = process.env.KITTY_IMAGES_PYTHON ?? path.join(root, ".cache", "venv", "bin", "python");
const { values } = parseArgs({
  options: {
    jobs: { type: "string", default: "10" },
    size: { type: "string", default: "256" },
    steps: { type: "string", default: "4" },
    device: { type: "string", default: "cpu" },
    family: { type: "string", default: "sd15" },
  },
});
const jobs = Number(values.jobs);
const size = Number(values.size);
const steps = Number(values.steps);
const median = (numbers) => [...numbers].sort((a, b) => a - b)[Math.floor(numbers.length / 2)];
const pyEnv = { PYTHONPATH: path.join(root, "python"), HF_HUB_OFFLINE: "1", PATH: process.env.PATH };

const work = await mkdtemp(path.join(tmpdir(), "kitty-bench-"));
try {
  const family = values.family;
  // SD 1.5 from the SD builders; any other family from the modern ones (python/diffusers_runner/tiny_families.py).
  if (family === "sd15") await execa(python, ["-m", "diffusers_runner.tiny_models", path.join(work, "models")], { env: pyEnv });
  else await execa(python, ["-m", "diffusers_runner.tiny_families", path.join(work, "models"), family], { env: pyEnv });
  const model = path.join(work, "models", family);

  const bare = JSON.parse((await execa(python, [path.join(root, "bench", "bare_pipe.py"), model, String(jobs), String(size), String(steps)], { env: { ...pyEnv, KITTY_IMAGES_DEVICE: values.device } })).stdout.trim().split("\n").at(-1));

  await writeFile(path.join(work, "models.yaml"), `tiny: ${model}\n`);
  const transport = new StdioClientTransport({
    command: process.execPath,
    args: [path.join(root, "dist", "cli.js"), "serve"],
    env: { ...pyEnv, HOME: work, KITTY_IMAGES_HOME: path.join(work, "home"), MODELS_YAML: path.join(work, "models.yaml"), KITTY_IMAGES_DEVICE: values.device, KITTY_IMAGES_LOG_LEVEL: "warn" },
    stderr: "ignore",
  });
  const client = new Client({ name: "bench", version: "0" });
  await client.connect(transport);
  const runJob = async (seed) => {
    const started = performance.now();
    const queued = await client.callTool({ name: "generate_image", arguments: { prompt: "a red cube", width: size, height: size, steps, seed } });
    for (;;) {
      const status = (await client.callTool({ name: "job_status", arguments: { jobId: queued.structuredContent.jobId, wait_seconds: 50 } })).structuredContent;
      if (status.status === "done") return { seconds: (performance.now() - started) / 1000, key: status.images[0].key };
      if (status.status !== "queued" && status.status !== "running") throw new Error(JSON.stringify(status));
    }
  };
  const first = await runJob(0); // cold: pays for the runner start and the one model load
  const warm = [];
  let last;
  for (let seed = 1; seed < jobs; seed++) {
    last = await runJob(seed);
    warm.push(last.seconds);
  }
  await client.close();
  const sidecar = JSON.parse(await readFile(path.join(work, "home", "files", last.key.replace(/\.png$/, ".json")), "utf8"));

  const e2e = median(warm);
  const rows = [
    ["bare pipe(), model loaded once", bare.barePipeSeconds],
    ["load + pipe() per job (the old design)", bare.loadPlusPipeSeconds],
    ["kitty-images job, warm (MCP -> queue -> runner -> storage)", e2e],
    ["kitty-images first job (runner start + load)", first.seconds],
  ];
  console.log(`tiny ${sidecar.family}, ${size}x${size}, ${steps} steps, device ${sidecar.device}, ${jobs} jobs; medians in seconds`);
  for (const [label, seconds] of rows) console.log(`  ${label.padEnd(60)} ${seconds.toFixed(3)}`);
  console.log(`  warm end-to-end / bare pipe()                                 ${(e2e / bare.barePipeSeconds).toFixed(2)}x`);
  console.log(`  load + pipe() per job / warm end-to-end                       ${(bare.loadPlusPipeSeconds / e2e).toFixed(2)}x`);
  console.log(`  model loads over ${jobs} jobs                                        ${sidecar.modelLoads}`);
  if (sidecar.modelLoads !== 1) process.exitCode = 1;
} finally {
  await rm(work, { recursive: true, force: true });
}
