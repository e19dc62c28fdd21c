// The service side of bench/gpu.py when Node can run the real server: one `node dist/cli.js serve` over stdio MCP,
// as bench/warm-runner.mjs drives it; the first job is the warm-up (runner start, load, compile if asked).
//
//   node bench/gpu-server.mjs --model DIR --jobs N --size PX --steps N --guidance G --device cuda|cpu [--compile]
//
// Prints one JSON line per job as it finishes: {"job": i, "seconds", "timings", "modelLoads", "device", "dtype",
// "options", "versions"}; job 0 is the warm-up. KITTY_IMAGES_PYTHON picks the runner's Python, as for the server.
import { Client } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({
  options: {
    model: { type: "string" },
    jobs: { type: "string", default: "3" },
    size: { type: "string", default: "1024" },
    steps: { type: "string", default: "30" },
    guidance: { type: "string", default: "5" },
    device: { type: "string", default: "cuda" },
    compile: { type: "boolean", default: false },
  },
});
if (!values.model) throw new Error("--model DIR is required");
const [jobs, size, steps, guidance] = ["jobs", "size", "steps", "guidance"].map((key) => Number(values[key]));

const work = await mkdtemp(path.join(tmpdir(), "kitty-bench-gpu-server-"));
let client;
try {
  await writeFile(path.join(work, "models.yaml"), `sdxl_random: ${path.resolve(values.model)}\n`);
  const env = {
    ...process.env,
    HOME: work,
    KITTY_IMAGES_HOME: path.join(work, "home"),
    MODELS_YAML: path.join(work, "models.yaml"),
    KITTY_IMAGES_DEVICE: values.device,
    KITTY_IMAGES_COMPILE: values.compile ? "1" : "0",
    KITTY_IMAGES_LOG_LEVEL: "warn",
    HF_HUB_OFFLINE: "1",
  };
  const transport = new StdioClientTransport({ command: process.execPath, args: [path.join(root, "dist", "cli.js"), "serve"], env, stderr: "inherit" });
  client = new Client({ name: "bench-gpu", version: "0" });
  await client.connect(transport);
  for (let job = 0; job <= jobs; job++) {
    const started = performance.now();
    const args = { prompt: "a photo of an astronaut riding a horse on mars", width: size, height: size, steps, cfg_scale: guidance, seed: job, refiner: false };
    const queued = await client.callTool({ name: "generate_image", arguments: args });
    if (queued.isError) throw new Error(JSON.stringify(queued.content));
    let status;
    for (;;) {
      status = (await client.callTool({ name: "job_status", arguments: { jobId: queued.structuredContent.jobId, wait_seconds: 50 } })).structuredContent;
      if (status.status === "done") break;
      if (status.status !== "queued" && status.status !== "running") throw new Error(`job ${job}: ${JSON.stringify(status)}`);
    }
    const seconds = (performance.now() - started) / 1000;
    const sidecar = JSON.parse(await readFile(path.join(work, "home", "files", status.images[0].key.replace(/\.png$/, ".json")), "utf8"));
    const { timings, modelLoads, device, dtype, options, versions } = sidecar;
    console.log(JSON.stringify({ job, seconds: Number(seconds.toFixed(4)), timings, modelLoads, device, dtype, options, versions }));
  }
} finally {
  await client?.close().catch(() => {});
  await rm(work, { recursive: true, force: true });
}
