import { execa, type ResultPromise } from "execa";
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { readPngInfo } from "../../src/images/pngInfo.js";
import { freePort } from "../helpers/minio.js";
import { PROJECT_ROOT, RUNNER_PYTHON } from "../helpers/paths.js";
import { startServer, waitForJob, type RunningServer } from "../helpers/server.js";
import { waitUntil } from "../helpers/waitUntil.js";

/**
 * A real ComfyUI (0.8.0, the source in ../shared/comfyui, set up by scripts/setup-comfyui.sh) generating for our
 * server on CPU, so the ComfyUI engine is held to ComfyUI itself and not only to test/helpers/comfyStandIn.ts.
 * ComfyUI tells a model's type from its tensor shapes, so it gets a full-size SD 1.5 with random weights
 * (python/tests/full_size_checkpoint.py, 2.1 GB, built once into .cache). About a minute on two cores, so it runs
 * wherever ComfyUI is set up; `npm run test:comfyui` sets it up and runs this file alone.
 */
const SHARED_COMFYUI = path.resolve(PROJECT_ROOT, "..", "shared", "comfyui");
const COMFY_DIR = path.join(PROJECT_ROOT, ".cache", "comfyui");
const COMFY_PYTHON = path.join(PROJECT_ROOT, ".cache", "comfyui-venv", "bin", "python");
const CHECKPOINT_NAME = "kitty_random_sd15.safetensors";
const CHECKPOINT = path.join(PROJECT_ROOT, ".cache", "comfyui-checkpoints", CHECKPOINT_NAME);
const present = existsSync(path.join(SHARED_COMFYUI, "src", "main.py"));
const setUp = existsSync(COMFY_PYTHON) && existsSync(path.join(COMFY_DIR, "main.py"));
// KITTY_IMAGES_COMFYUI=1 (npm run test:comfyui) insists: then a ComfyUI that is not set up fails the file.
const enabled = present && (setUp || process.env.KITTY_IMAGES_COMFYUI === "1");
const skipReason = !present
  ? `needs ComfyUI's source in ${SHARED_COMFYUI}, which is absent here`
  : "needs ComfyUI set up in .cache: npm run test:comfyui (or bash scripts/setup-comfyui.sh) installs it from ../shared/comfyui";
if (!enabled) console.info(`test/comfyuiReal.test.ts skipped: it ${skipReason}`);

type ComfyHistory = Record<string, { prompt: [number, string, Record<string, any>, unknown, unknown]; status: { status_str: string; completed: boolean; messages: Array<[string, unknown]> } }>;

describe.runIf(enabled)("a real ComfyUI behind the same tools", () => {
  let dir = "";
  let comfyLog = "";
  let comfy: ResultPromise;
  let comfyExited: string | null = null;
  let server: RunningServer;
  let base = "";

  const logTail = () => (comfyLog && existsSync(comfyLog) ? `\n--- ComfyUI log (${comfyLog}) ---\n${readFileSync(comfyLog, "utf8").slice(-4000)}` : "");
  const comfyJson = async <T = any>(route: string): Promise<T> => (await (await fetch(`${base}${route}`)).json()) as T;

  beforeAll(async () => {
    if (!setUp) throw new Error(`ComfyUI is not set up in ${COMFY_DIR} and ${COMFY_PYTHON}: bash scripts/setup-comfyui.sh does it (npm run test:comfyui runs it first)`);
    dir = mkdtempSync(path.join(tmpdir(), "kitty-comfyui-"));
    comfyLog = path.join(dir, "comfyui.log");
    await execa(RUNNER_PYTHON, ["-m", "tests.full_size_checkpoint", CHECKPOINT], { cwd: path.join(PROJECT_ROOT, "python"), env: { HF_HUB_OFFLINE: "1" } });
    // A base directory of the test's own: models, output, user files and ComfyUI's database start empty each run.
    const comfyBase = path.join(dir, "comfyui-base");
    mkdirSync(path.join(comfyBase, "models", "checkpoints"), { recursive: true });
    mkdirSync(path.join(comfyBase, "custom_nodes")); // ComfyUI lists it at start and stops if it is missing
    symlinkSync(CHECKPOINT, path.join(comfyBase, "models", "checkpoints", CHECKPOINT_NAME));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    comfy = execa(COMFY_PYTHON, ["main.py", "--cpu", "--listen", "127.0.0.1", "--port", String(port), "--disable-auto-launch", "--base-directory", comfyBase, "--database-url", `sqlite:///${path.join(comfyBase, "comfyui.db")}`], {
      cwd: COMFY_DIR,
      // Unbuffered, so a line ComfyUI logs is in the file by the time the test looks for it.
      env: { PYTHONUNBUFFERED: "1", HF_HUB_OFFLINE: "1" },
      reject: false,
      stdout: "pipe",
      stderr: "pipe",
    });
    const logStream = createWriteStream(comfyLog);
    comfy.stdout?.pipe(logStream, { end: false });
    comfy.stderr?.pipe(logStream, { end: false });
    void comfy.then((result) => (comfyExited = `exit code ${result.exitCode ?? result.signal}`));
    await waitUntil("ComfyUI answers GET /object_info", async () => {
      if (comfyExited) throw new Error(`ComfyUI stopped before it answered (${comfyExited})${logTail()}`);
      return (await fetch(`${base}/object_info`).catch(() => null))?.ok;
    }, { timeoutMs: 240_000, intervalMs: 500 });
    const home = path.join(dir, "home");
    mkdirSync(home, { recursive: true });
    writeFileSync(
      path.join(home, "models.yaml"),
      ["comfy_sd15:", "  engine: comfyui", `  model: ${CHECKPOINT_NAME}`, "  defaults: {width: 256, height: 256, steps: 2}", ""].join("\n"),
    );
    // A first prompt loads 3 GB of weights on two cores: more than the default deadline's margin.
    server = await startServer({ home, modelsYaml: path.join(home, "models.yaml") }, { COMFYUI_BASE_URL: base, COMFYUI_TIMEOUT_SECONDS: "600", KITTY_IMAGES_STORAGE: "local" });
  }, 600_000);

  beforeEach(({ onTestFailed }) => onTestFailed(() => console.error(logTail())));

  afterAll(async () => {
    await server?.close();
    if (comfy) {
      const times = [...readFileSync(comfyLog, "utf8").matchAll(/Prompt executed in ([\d.]+) seconds/g)].map((match) => `${match[1]} s`);
      console.log(`ComfyUI's prompt times, in order: ${times.join(", ") || "none"}`);
      comfy.kill("SIGTERM");
      await comfy;
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("lists ComfyUI's checkpoint and runs a job through the tools, its steps showing, storing ComfyUI's PNG with its graph", async () => {
    const { models } = await server.ok("list_models");
    expect(models).toEqual([expect.objectContaining({ name: "comfy_sd15", engine: "comfyui", family: "sd15", present: true, path: CHECKPOINT_NAME })]);
    const queued = await server.ok("generate_image", { prompt: "a red cube on a table", model: "comfy_sd15", seed: 5 });
    const progress = new Set<string>();
    const done = await waitUntil(`job ${queued.jobId} ends`, async () => {
      const status = await server.ok("job_status", { jobId: queued.jobId });
      if (status.progress) progress.add(`${status.progress.step}/${status.progress.totalSteps}`);
      return ["done", "failed", "cancelled"].includes(status.status) && status;
    }, { timeoutMs: 300_000, intervalMs: 100 });
    expect(done, JSON.stringify(done.error)).toMatchObject({ status: "done", images: [{ seed: 5, width: 256, height: 256 }] });
    // A step takes seconds here, so the first of the two is seen while the second runs.
    expect([...progress], `progress seen: ${[...progress].join(", ")}`).toContain("1/2");

    const selected = await server.ok("select_image", { key: done.images[0].key });
    expect(selected.metadata).toMatchObject({ engine: "comfyui", seed: 5, engineInfo: { checkpoint: CHECKPOINT_NAME, graph: "built-in text-to-image" } });
    const png = readPngInfo(readFileSync(fileURLToPath(selected.imageRef.downloadUrl)));
    expect([png.width, png.height]).toEqual([256, 256]);
    // ComfyUI's own chunk, the graph as it ran it, is kept in what we store.
    const graph = JSON.parse(png.text.prompt!);
    expect(graph["4"]).toMatchObject({ class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: CHECKPOINT_NAME } });
    expect(graph["3"]).toMatchObject({ class_type: "KSampler", inputs: { seed: 5, steps: 2 } });
    expect(graph["6"].inputs.text).toBe("a red cube on a table");
  }, 400_000);

  it("runs a 2-image batch as one ComfyUI prompt per image, seeded seed and seed+1", async () => {
    const done = await waitForJob(server, (await server.ok("generate_image", { prompt: "two of a kind", model: "comfy_sd15", count: 2, seed: 4242, steps: 1 })).jobId, 400_000);
    expect(done, JSON.stringify(done.error)).toMatchObject({ status: "done", images: [{ seed: 4242 }, { seed: 4243 }] });
    for (const image of done.images) {
      const selected = await server.ok("select_image", { key: image.key });
      const graph = JSON.parse(readPngInfo(readFileSync(fileURLToPath(selected.imageRef.downloadUrl))).text.prompt!);
      expect(graph["3"].inputs.seed).toBe(image.seed);
    }
    // What ComfyUI itself received and finished: two graphs with this prompt, one per seed.
    const history = await comfyJson<ComfyHistory>("/history");
    const batch = Object.values(history).filter((entry) => entry.prompt[2]["6"].inputs.text === "two of a kind");
    expect(batch.map((entry) => [entry.prompt[2]["3"].inputs.seed, entry.status.status_str]).sort()).toEqual([[4242, "success"], [4243, "success"]]);
  }, 500_000);

  it("cancels a running prompt by interrupting that prompt alone, leaving ComfyUI's queue empty", async () => {
    const queued = await server.ok("generate_image", { prompt: "a long one", model: "comfy_sd15", steps: 30 });
    await waitUntil(`job ${queued.jobId} reports a step`, async () => {
      const status = await server.ok("job_status", { jobId: queued.jobId });
      if (!["queued", "running"].includes(status.status)) throw new Error(`job ended early: ${JSON.stringify(status)}`);
      return (status.progress?.step ?? 0) > 0;
    }, { timeoutMs: 300_000, intervalMs: 100 });
    const { queue_running: running } = await comfyJson<{ queue_running: Array<[number, string]> }>("/queue");
    expect(running).toHaveLength(1);
    const promptId = running[0]![1];

    await server.ok("cancel_job", { jobId: queued.jobId });
    expect(await waitForJob(server, queued.jobId, 60_000)).toMatchObject({ status: "cancelled" });
    // The job ends once ComfyUI has taken the interrupt; its executor drops the prompt a moment later.
    await waitUntil("ComfyUI's queue is empty", async () => {
      const queue = await comfyJson<{ queue_running: unknown[]; queue_pending: unknown[] }>("/queue");
      return queue.queue_running.length === 0 && queue.queue_pending.length === 0;
    }, { timeoutMs: 15_000, intervalMs: 100 });
    const entry = (await comfyJson<ComfyHistory>(`/history/${promptId}`))[promptId]!;
    expect(entry.status.messages.map(([type]) => type)).toContain("execution_interrupted");
    await waitUntil("ComfyUI logs the interrupt", () => readFileSync(comfyLog, "utf8").includes(`Interrupting prompt ${promptId}`), { timeoutMs: 5_000 });
    // Never the global interrupt, which would stop whatever another client had running.
    expect(readFileSync(comfyLog, "utf8")).not.toContain("Global interrupt");
    // ComfyUI answers the interrupt with an empty body: taken as the success it is, not a failure to stop.
    expect(readFileSync(server.logPath, "utf8")).not.toContain("could not stop the ComfyUI prompt");
  }, 500_000);
});

describe.runIf(!enabled)("a real ComfyUI behind the same tools", () => {
  it.skip(skipReason, () => {});
});
