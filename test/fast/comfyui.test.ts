import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { readPngInfo } from "../../src/images/pngInfo.js";
import { ComfyUIEngine } from "../../src/engines/comfyui.js";
import { COMFY_CHECKPOINTS, startComfyStandIn } from "../helpers/comfyStandIn.js";
import { configuredEngine, startEngineApp, useEngineApp } from "../helpers/engineApp.js";
import { RUNNER_PYTHON } from "../helpers/paths.js";
import { waitUntil } from "../helpers/waitUntil.js";

/**
 * The ComfyUI engine behind the real app and MCP tools, against a stand-in of ComfyUI's API (HTTP and its /ws
 * websocket): the built-in graph filled from the request, steps from the socket, batches as one prompt per seed,
 * cancel of a running and of a waiting prompt, an execution error, a refused graph, a socket that says nothing.
 */
describe("engine: comfyui: ComfyUI generates with the built-in graph, our queue, storage, previews and index do the rest", () => {
  const context = useEngineApp(startComfyStandIn, [
    "comfy_sd15:",
    "  engine: comfyui",
    `  model: ${COMFY_CHECKPOINTS[1]}`,
    "  defaults: {width: 256, height: 256, steps: 8}",
    "comfy_xl:",
    "  engine: comfyui",
    `  model: ${COMFY_CHECKPOINTS[0]}`,
    "  defaults: {width: 256, height: 256, steps: 4}",
    // A checkpoint named as people say it, without its extension: ComfyUI is sent the file name it lists.
    "comfy_short:",
    "  engine: comfyui",
    "  model: v1-5-pruned-emaonly",
    "  defaults: {width: 256, height: 256, steps: 2}",
  ], (standIn) => ({ COMFYUI_BASE_URL: standIn.url }), {
    // A prompt's deadline: 100 ms + 3 s per step of a megapixel (production's), ~200 ms per step at 256x256, many
    // times what the stand-in's steps take.
    comfyui: { jobBaseMs: 100, msPerMegapixelStep: 3_000 },
  });

  it("knows a checkpoint by its file name with or without the extension, and sends ComfyUI the name it lists", async () => {
    const { models } = await context.server.ok("list_models");
    expect(models.find((model: { name: string }) => model.name === "comfy_short")).toMatchObject({ present: true });
    const queued = await context.server.ok("generate_image", { prompt: "short name", model: "comfy_short" });
    expect(await context.server.ended(queued.jobId)).toMatchObject({ status: "done", model: "comfy_short" });
    expect(context.standIn.prompts.at(-1)!.graph["4"].inputs.ckpt_name).toBe(COMFY_CHECKPOINTS[1]);
    // And an agent may name the entry by its checkpoint's file name.
    const byFile = await context.server.ok("generate_image", { prompt: "by file name", model: "sd_xl_base_1.0" });
    expect(byFile.model).toBe("comfy_xl");
    await context.server.ended(byFile.jobId);
  });

  it("takes its waits from the config: COMFYUI_TIMEOUT_SECONDS as the deadline's base, production's polls", () => {
    const engine = configuredEngine("comfyui", { COMFYUI_BASE_URL: "http://127.0.0.1:1", COMFYUI_TIMEOUT_SECONDS: "7" });
    expect(engine).toBeInstanceOf(ComfyUIEngine);
    expect((engine as ComfyUIEngine).timing).toEqual({ callMs: 10_000, historyPollMs: 1_000, jobBaseMs: 7_000, msPerMegapixelStep: 3_000 });
  });

  it("lists the checkpoints as present, read from ComfyUI's object_info", async () => {
    const { models } = await context.server.ok("list_models");
    expect(models).toEqual([
      expect.objectContaining({ name: "comfy_sd15", engine: "comfyui", family: "sd15", present: true, path: COMFY_CHECKPOINTS[1] }),
      expect.objectContaining({ name: "comfy_xl", engine: "comfyui", family: "sdxl", present: true, path: COMFY_CHECKPOINTS[0] }),
      expect.objectContaining({ name: "comfy_short", engine: "comfyui", present: true, path: "v1-5-pruned-emaonly" }),
    ]);
  });

  it("encodes an SDXL model's prompts with CLIPTextEncodeSDXL and the image's size", async () => {
    const done = await context.server.ended((await context.server.ok("generate_image", { prompt: "xl kettle", negative_prompt: "noise", model: "comfy_xl" })).jobId);
    expect(done).toMatchObject({ status: "done", images: [{ width: 256, height: 256 }] });
    const graph = context.standIn.prompts.at(-1)!.graph;
    expect(graph["6"]).toEqual({ class_type: "CLIPTextEncodeSDXL", inputs: { width: 256, height: 256, crop_w: 0, crop_h: 0, target_width: 256, target_height: 256, text_g: "xl kettle", text_l: "xl kettle", clip: ["4", 1] } });
    expect(graph["7"].inputs).toMatchObject({ text_g: "noise", text_l: "noise" });
  });

  it("queues one built-in graph per image with seeds seed, seed+1, follows the steps over the websocket, and stores ComfyUI's PNGs", async () => {
    context.standIn.stepMs = 15;
    const queued = await context.server.ok("generate_image", { prompt: "a red kettle", negative_prompt: "blurry", model: "comfy_sd15", seed: 7, count: 2, steps: 10, cfg_scale: 6.5, scheduler: "dpmpp_2m_karras" });
    const steps: number[] = [];
    const watch = setInterval(async () => {
      const step = (await context.server.app.queue.find(queued.jobId))?.progress?.step;
      if (step !== undefined && step !== steps.at(-1)) steps.push(step);
    }, 5);
    const done = await context.server.ended(queued.jobId).finally(() => clearInterval(watch));
    expect(done, JSON.stringify(done.error)).toMatchObject({ status: "done", images: [{ seed: 7, width: 256, height: 256 }, { seed: 8 }] });

    const graphs = context.standIn.prompts.slice(-2).map((prompt) => prompt.graph);
    expect(graphs.map((graph) => graph["3"].inputs.seed)).toEqual([7, 8]);
    expect(graphs[0]).toMatchObject({
      "4": { class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: COMFY_CHECKPOINTS[1] } },
      "5": { class_type: "EmptyLatentImage", inputs: { width: 256, height: 256, batch_size: 1 } },
      "6": { class_type: "CLIPTextEncode", inputs: { text: "a red kettle", clip: ["4", 1] } },
      "7": { class_type: "CLIPTextEncode", inputs: { text: "blurry", clip: ["4", 1] } },
      "3": { class_type: "KSampler", inputs: { steps: 10, cfg: 6.5, sampler_name: "dpmpp_2m", scheduler: "karras", denoise: 1 } },
      "9": { class_type: "SaveImage" },
    });
    expect(steps.length).toBeGreaterThan(3);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
    expect(steps.some((step) => step > 10)).toBe(true);

    const selected = await context.server.ok("select_image", { key: done.images[0].key });
    const png = readFileSync(fileURLToPath(selected.imageRef.downloadUrl));
    // ComfyUI's own chunks (its graph) are kept as it wrote them.
    expect(JSON.parse(readPngInfo(png).text.prompt!)["3"].inputs.seed).toBe(7);
    expect(selected.metadata).toMatchObject({ engine: "comfyui", seed: 7, engineInfo: { checkpoint: COMFY_CHECKPOINTS[1], graph: "built-in text-to-image" } });
    if (existsSync(RUNNER_PYTHON)) expect(selected.metadata.preview).toMatchObject({ mimeType: "image/webp", width: 256, height: 256 });
  });

  it("cancels a running prompt with /interrupt naming that prompt, and a waiting one by deleting it from ComfyUI's queue", async () => {
    context.standIn.stepMs = 40;
    const running = await context.server.ok("generate_image", { prompt: "interrupted", model: "comfy_sd15", steps: 50 });
    await waitUntil("the job reports a step", async () => ((await context.server.app.queue.find(running.jobId))?.progress?.step ?? 0) > 0, { timeoutMs: 10_000 });
    const interrupts = context.standIn.interrupts.length;
    await context.server.ok("cancel_job", { jobId: running.jobId });
    expect(await context.server.ended(running.jobId)).toMatchObject({ status: "cancelled" });
    // Never the global interrupt, which would stop another client's prompt on a shared ComfyUI.
    expect(context.standIn.interrupts.slice(interrupts)).toEqual([context.standIn.prompts.at(-1)!.id]);
    // ComfyUI answers with an empty body, which is its success: no complaint that the prompt could not be stopped.
    expect(context.server.warnings.filter((line) => line.includes("could not stop"))).toEqual([]);

    context.standIn.holdQueue = true;
    // Many steps, so a deadline of seconds: the cancel, not the deadline, must be what ends it.
    const waiting = await context.server.ok("generate_image", { prompt: "never started", model: "comfy_sd15", steps: 20 });
    await waitUntil("ComfyUI has the prompt", () => context.standIn.prompts.at(-1)?.graph["6"].inputs.text === "never started", { timeoutMs: 10_000 });
    await context.server.ok("cancel_job", { jobId: waiting.jobId });
    expect(await context.server.ended(waiting.jobId)).toMatchObject({ status: "cancelled" });
    expect(context.standIn.deleted).toEqual([context.standIn.prompts.at(-1)!.id]);
    expect(context.server.warnings.filter((line) => line.includes("could not stop"))).toEqual([]);
    context.standIn.release();
  });

  it.each([
    ["an execution error", "execution-error", "generation_failed", /^ComfyUI at http:\/\/127\.0\.0\.1:\d+ failed the prompt: torch\.OutOfMemoryError: CUDA out of memory\. Tried to allocate 2\.00 GiB \(node 3, KSampler\)$/],
    ["a graph it refuses", "node-errors", "engine_failed", /answered POST \/prompt with HTTP 400: .*ckpt_name: 'missing\.safetensors' not in/],
    ["a finished prompt with no image", "no-outputs", "engine_failed", /answered \/history with something other than an image from the SaveImage node \(9\)/],
  ] as const)("fails the job on %s, naming ComfyUI, its URL and what came back; the queue goes on", async (_name, mode, code, message) => {
    context.standIn.mode = mode;
    const failed = await context.server.ended((await context.server.ok("generate_image", { prompt: `misbehaving: ${mode}`, model: "comfy_sd15", steps: 3 })).jobId);
    expect(failed).toMatchObject({ status: "failed", error: { code } });
    expect(failed.error.message).toMatch(message);
    context.standIn.mode = "ok";
    expect(await context.server.ended((await context.server.ok("generate_image", { prompt: "the next one", model: "comfy_sd15", steps: 3 })).jobId)).toMatchObject({ status: "done" });
  });

  it("fails the job on a prompt that never finishes at its deadline, naming ComfyUI, its URL and the deadline; the queue goes on", async () => {
    context.standIn.mode = "never-finishes";
    const failed = await context.server.ended((await context.server.ok("generate_image", { prompt: "never ends", model: "comfy_sd15", steps: 1 })).jobId);
    expect(failed).toMatchObject({ status: "failed", error: { code: "engine_unreachable" } });
    // 100 ms + 1 step x 0.066 MP x 3,000 ms: 297 ms.
    expect(failed.error.message).toMatch(/^ComfyUI at http:\/\/127\.0\.0\.1:\d+ did not finish the prompt within 0\.3 s$/);
    context.standIn.mode = "ok";
    expect(await context.server.ended((await context.server.ok("generate_image", { prompt: "the next one", model: "comfy_sd15", steps: 3 })).jobId)).toMatchObject({ status: "done" });
  });

  it("waits for /history after execution_success, which ComfyUI sends before it writes the entry", async () => {
    // Longer than the engine's first reads of /history (at 0, 25 and 75 ms): a job that read it once at
    // execution_success failed here.
    context.standIn.historyLagMs = 150;
    try {
      const done = await context.server.ended((await context.server.ok("generate_image", { prompt: "history comes late", model: "comfy_sd15", steps: 2 })).jobId);
      expect(done, JSON.stringify(done.error)).toMatchObject({ status: "done", images: [{ width: 256, height: 256 }] });
    } finally {
      context.standIn.historyLagMs = 40;
    }
  });

  it("still finishes when the websocket says nothing, by reading /history", async () => {
    context.standIn.mode = "silent-socket";
    const done = await context.server.ended((await context.server.ok("generate_image", { prompt: "quiet socket", model: "comfy_sd15", steps: 3 })).jobId);
    expect(done).toMatchObject({ status: "done", images: [{ width: 256, height: 256 }] });
  });

  it("fills a workflow of the user's own: titled nodes first, then the graph's shape; other nodes untouched", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "kitty-workflow-"));
    const workflow = {
      "10": { class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: "placeholder.safetensors" } },
      "16": { class_type: "LoraLoader", inputs: { lora_name: "film.safetensors", strength_model: 0.7, strength_clip: 0.7, model: ["10", 0], clip: ["10", 1] } },
      "11": { class_type: "CLIPTextEncode", inputs: { text: "old prompt", clip: ["16", 1] }, _meta: { title: "Positive" } },
      "12": { class_type: "CLIPTextEncode", inputs: { text: "old negative", clip: ["16", 1] } },
      "13": { class_type: "EmptyLatentImage", inputs: { width: 1024, height: 1024, batch_size: 4 } },
      "14": {
        class_type: "KSamplerAdvanced",
        inputs: { add_noise: "enable", noise_seed: 1, steps: 30, cfg: 8, sampler_name: "euler", scheduler: "normal", start_at_step: 0, end_at_step: 10000, return_with_leftover_noise: "disable", model: ["16", 0], positive: ["11", 0], negative: ["12", 0], latent_image: ["13", 0] },
      },
      "15": { class_type: "VAEDecode", inputs: { samples: ["14", 0], vae: ["10", 2] } },
      "17": { class_type: "SaveImage", inputs: { filename_prefix: "mine", images: ["15", 0] }, _meta: { title: "kitty:output" } },
    };
    writeFileSync(path.join(dir, "mine_api.json"), JSON.stringify(workflow));
    const own = await startEngineApp(
      ["mine:", "  engine: comfyui", `  model: ${COMFY_CHECKPOINTS[0]}`, `  workflow: ${path.join(dir, "mine_api.json")}`, "  defaults: {width: 256, height: 256, steps: 5}"],
      { COMFYUI_BASE_URL: context.standIn.url },
    );
    try {
      const done = await own.ended((await own.ok("generate_image", { prompt: "my own graph", negative_prompt: "ugly", model: "mine", seed: 99, scheduler: "euler_a" })).jobId);
      expect(done, JSON.stringify(done.error)).toMatchObject({ status: "done", images: [{ seed: 99, width: 256, height: 256 }] });
      const sent = context.standIn.prompts.at(-1)!.graph;
      expect(sent["14"].inputs).toMatchObject({ noise_seed: 99, steps: 5, cfg: 7, sampler_name: "euler_ancestral", scheduler: "normal", add_noise: "enable", end_at_step: 10000 });
      expect(sent["11"].inputs.text).toBe("my own graph");
      expect(sent["12"].inputs.text).toBe("ugly");
      expect(sent["13"].inputs).toEqual({ width: 256, height: 256, batch_size: 1 });
      expect(sent["10"].inputs.ckpt_name).toBe(COMFY_CHECKPOINTS[0]);
      expect(sent["16"]).toEqual(workflow["16"]);
      expect((await own.ok("select_image", { key: done.images[0].key })).metadata.engineInfo.graph).toBe(path.join(dir, "mine_api.json"));
    } finally {
      await own.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("fails with ComfyUI's address when it is down, and list_models says why", async () => {
    await context.standIn.close();
    const failed = await context.server.ended((await context.server.ok("generate_image", { prompt: "nobody home", model: "comfy_sd15" })).jobId);
    expect(failed).toMatchObject({ status: "failed", error: { code: "engine_unreachable" } });
    expect(failed.error.message).toMatch(/^ComfyUI at http:\/\/127\.0\.0\.1:\d+ could not be reached/);
    const { models } = await context.server.ok("list_models");
    expect(models[0]).toMatchObject({ present: false, problem: expect.stringContaining("could not be reached") });
  });
});
