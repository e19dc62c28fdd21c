import { execa, type ResultPromise } from "execa";
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../helpers/minio.js";
import { PROJECT_ROOT, RUNNER_PYTHON } from "../helpers/paths.js";
import { readPng } from "../helpers/png.js";
import { startServer, type RunningServer } from "../helpers/server.js";
import { waitUntil } from "../helpers/waitUntil.js";

/**
 * A real InvokeAI (the pinned invokeai from PyPI, in .cache/invokeai-venv) generating for our server on CPU, with a
 * tiny random-weight SD 1.5 that has CLIP's real width, since InvokeAI tells SD 1.5 by its cross-attention size.
 * Opt-in, since InvokeAI and its dependencies are several GB: `npm run test:invokeai` installs it and runs this.
 */
const INVOKE_WEB = path.join(PROJECT_ROOT, ".cache", "invokeai-venv", "bin", "invokeai-web");
const enabled = process.env.KITTY_IMAGES_INVOKEAI === "1";

describe.runIf(enabled)("a real InvokeAI behind the same tools", () => {
  const dir = mkdtempSync(path.join(tmpdir(), "kitty-invokeai-"));
  let invoke: ResultPromise;
  let server: RunningServer;
  let base = "";

  beforeAll(async () => {
    const built = await execa(RUNNER_PYTHON, ["-m", "diffusers_runner.tiny_models", dir, "--sd15-768"], { cwd: path.join(PROJECT_ROOT, "python"), env: { HF_HUB_OFFLINE: "1" } });
    const model = JSON.parse(built.stdout.trim().split("\n").at(-1)!).sd15_768 as string;
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    invoke = execa(INVOKE_WEB, ["--root", path.join(dir, "invokeai-root")], {
      env: { INVOKEAI_HOST: "127.0.0.1", INVOKEAI_PORT: String(port), HF_HUB_OFFLINE: "1", INVOKEAI_DEVICE: "cpu" },
      reject: false,
      stdout: "ignore",
      stderr: "pipe",
    });
    invoke.stderr?.pipe(createWriteStream(path.join(dir, "invokeai.log")));
    await waitUntil("InvokeAI answers", async () => (await fetch(`${base}/api/v1/app/version`).catch(() => null))?.ok, { timeoutMs: 240_000, intervalMs: 500 });
    const install = (await (await fetch(`${base}/api/v2/models/install?source=${encodeURIComponent(model)}&inplace=true`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" })).json()) as { id: number };
    await waitUntil("InvokeAI installs the tiny model", async () => {
      const job = (await (await fetch(`${base}/api/v2/models/install/${install.id}`)).json()) as { status: string; error?: string };
      if (job.status === "error") throw new Error(`InvokeAI refused the model: ${JSON.stringify(job)}`);
      return job.status === "completed";
    }, { timeoutMs: 120_000, intervalMs: 500 });
    const home = path.join(dir, "home");
    mkdirSync(home, { recursive: true });
    writeFileSync(path.join(home, "models.yaml"), "tiny_invoke: sd15_768\n");
    server = await startServer({ home, modelsYaml: path.join(home, "models.yaml") }, { IMAGE_ENGINE: "invokeai", INVOKE_HOST: "127.0.0.1", INVOKE_PORT: String(port), KITTY_IMAGES_STORAGE: "local" });
  }, 600_000);

  afterAll(async () => {
    await server?.close();
    invoke?.kill("SIGTERM");
    await invoke;
    rmSync(dir, { recursive: true, force: true });
  });

  const ended = (jobId: string) =>
    waitUntil(`job ${jobId} ends`, async () => {
      const status = await server.ok("job_status", { jobId, wait_seconds: 10 });
      return ["done", "failed", "cancelled"].includes(status.status) && status;
    }, { timeoutMs: 300_000, intervalMs: 0 });

  it("lists InvokeAI's model, runs a batch with its steps showing, and stores PNGs of the asked size with previews", async () => {
    const { models } = await server.ok("list_models");
    expect(models).toEqual([expect.objectContaining({ name: "tiny_invoke", engine: "invokeai", family: "sd15", present: true })]);
    const queued = await server.ok("generate_image", { prompt: "a red cube on a table", model: "tiny_invoke", width: 256, height: 256, steps: 30, seed: 11, count: 2 });
    const steps = new Set<number>();
    const done = await waitUntil(`job ${queued.jobId} ends`, async () => {
      const status = await server.ok("job_status", { jobId: queued.jobId });
      if (status.progress) steps.add(status.progress.step);
      return ["done", "failed", "cancelled"].includes(status.status) && status;
    }, { timeoutMs: 300_000, intervalMs: 50 });
    expect(done, JSON.stringify(done.error)).toMatchObject({ status: "done", images: [{ seed: 11, width: 256, height: 256 }, { seed: 12 }] });
    expect([...steps].some((step) => step > 0 && step < 60), `steps seen: ${[...steps].join(",")}`).toBe(true);
    for (const image of done.images) {
      const selected = await server.ok("select_image", { key: image.key });
      const png = readPng(readFileSync(fileURLToPath(selected.imageRef.downloadUrl)));
      expect([png.width, png.height]).toEqual([256, 256]);
      expect(selected.metadata).toMatchObject({ engine: "invokeai", preview: { mimeType: "image/webp" }, engineInfo: { model: { name: "sd15_768", base: "sd-1" } } });
    }
  });

  it("cancels a running job by cancelling its queue item in InvokeAI", async () => {
    const queued = await server.ok("generate_image", { prompt: "a long one", model: "tiny_invoke", width: 256, height: 256, steps: 150 });
    await waitUntil("the job reports a step", async () => ((await server.ok("job_status", { jobId: queued.jobId })).progress?.step ?? 0) > 0, { timeoutMs: 120_000, intervalMs: 50 });
    await server.ok("cancel_job", { jobId: queued.jobId });
    expect(await ended(queued.jobId)).toMatchObject({ status: "cancelled" });
    const items = (await (await fetch(`${base}/api/v1/queue/default/list_all`)).json()) as Array<{ status: string }>;
    expect(items.at(-1)?.status).toBe("canceled");
  });
});

describe.runIf(!enabled)("a real InvokeAI behind the same tools", () => {
  it.skip("is opt-in (several GB): npm run test:invokeai installs InvokeAI into .cache/invokeai-venv and runs it", () => {});
});
