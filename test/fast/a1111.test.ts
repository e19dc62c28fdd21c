import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { readPngInfo } from "../../src/images/pngInfo.js";
import { A1111Engine } from "../../src/engines/a1111.js";
import { startA1111StandIn, STAND_IN_MODELS } from "../helpers/a1111StandIn.js";
import { configuredEngine, useEngineApp } from "../helpers/engineApp.js";
import { RUNNER_PYTHON } from "../helpers/paths.js";
import { errorText } from "../helpers/toolCalls.js";
import { waitUntil } from "../helpers/waitUntil.js";

/**
 * The AUTOMATIC1111 engine behind the real app and MCP tools, against a stand-in of its web API: success with
 * progress and batches, cancel, malformed, failing, slow and dead answers. IMAGE_ENGINE=a1111 so flat entries
 * are the web UI's checkpoint names, as under the original service.
 */
describe("IMAGE_ENGINE=a1111: the web UI generates, our queue, storage, previews and index do the rest", () => {
  const context = useEngineApp(startA1111StandIn, [
    `juggernaut: ${STAND_IN_MODELS[0]}`,
    "webui_sd15:",
    "  engine: a1111",
    `  model: ${STAND_IN_MODELS[1]}`,
    "  family: sd15",
    "  defaults: {width: 256, height: 256, steps: 6}",
    "gone:",
    "  model: not-there.safetensors",
  ], (standIn) => ({ IMAGE_ENGINE: "a1111", A1111_BASE_URL: standIn.url, A1111_API_AUTH: "kitty:secret" }), {
    // A job's deadline: 100 ms + 3 s per step of a megapixel (production's), ~200 ms per step at 256x256, many
    // times what the stand-in's steps take.
    a1111: { jobBaseMs: 100, msPerMegapixelStep: 3_000 },
  });

  it("takes its waits from the config: A1111_TIMEOUT_SECONDS as the deadline's base, production's polls", () => {
    const engine = configuredEngine("a1111", { A1111_TIMEOUT_SECONDS: "7" });
    expect(engine).toBeInstanceOf(A1111Engine);
    expect((engine as A1111Engine).timing).toEqual({ callMs: 10_000, pollMs: 250, jobBaseMs: 7_000, msPerMegapixelStep: 3_000 });
  });

  const ended = (jobId: string) => context.server.ended(jobId);

  it("lists the web UI's models with their engine, and says which it does not have", async () => {
    const { models } = await context.server.ok("list_models");
    expect(models.find((model: { name: string }) => model.name === "webui_sd15")).toMatchObject({
      engine: "a1111",
      family: "sd15",
      present: true,
      path: STAND_IN_MODELS[1],
      defaults: { width: 256, height: 256, steps: 6 },
    });
    expect(models.find((model: { name: string }) => model.name === "juggernaut")).toMatchObject({ engine: "a1111", family: "sdxl", present: true, defaults: { width: 1024 } });
    const gone = models.find((model: { name: string }) => model.name === "gone");
    expect(gone).toMatchObject({ engine: "a1111", present: false });
    expect(gone.problem).toBe(`a1111 has no model 'not-there.safetensors' (it has: ${STAND_IN_MODELS.join(", ")})`);
  });

  it("takes any checkpoint the web UI offers by its title, unless an entry already names it, as the original service did", async () => {
    const { models } = await context.server.ok("list_models");
    expect(models.map((model: { name: string; engine: string; present: boolean }) => [model.name, model.engine, model.present])).toEqual([
      ["juggernaut", "a1111", true],
      ["webui_sd15", "a1111", true],
      ["gone", "a1111", false],
      [STAND_IN_MODELS[2], "a1111", true],
    ]);
    const queued = await context.server.ok("generate_image", { prompt: "by title", model: STAND_IN_MODELS[2], width: 256, height: 256, steps: 2 });
    expect(await ended(queued.jobId)).toMatchObject({ status: "done", model: STAND_IN_MODELS[2] });
    expect(context.standIn.requests.at(-1)!.body.override_settings).toEqual({ sd_model_checkpoint: STAND_IN_MODELS[2] });
    const unknown = await context.server.client.callTool({ name: "generate_image", arguments: { prompt: "x", model: "nowhere.safetensors" } });
    expect(errorText(unknown as never)).toContain(`model 'nowhere.safetensors' is not in models.yaml (known: juggernaut, webui_sd15, gone, ${STAND_IN_MODELS[2]})`);
  });

  it("knows a checkpoint by the names the web UI does: its title, its file name and its model name, recorded under the canonical name", async () => {
    for (const [asked, expected] of [
      ["juggernautXL_v9", "juggernaut"],
      ["juggernautXL_v9.safetensors", "juggernaut"],
      ["v1-5-pruned-emaonly", "webui_sd15"],
      ["dreamshaper_8", STAND_IN_MODELS[2]],
      ["dreamshaper_8.safetensors", STAND_IN_MODELS[2]],
    ] as const) {
      const queued = await context.server.ok("generate_image", { prompt: `asked as ${asked}`, model: asked, width: 256, height: 256, steps: 2 });
      expect(queued.model, asked).toBe(expected);
      expect(await ended(queued.jobId)).toMatchObject({ status: "done", model: expected });
    }
    expect(context.standIn.requests.at(-1)!.body.override_settings).toEqual({ sd_model_checkpoint: STAND_IN_MODELS[2] });
  });

  it("runs a batch on the web UI with its checkpoint, sampler and seeds, reports its steps, and stores its PNGs with their own parameters", async () => {
    context.standIn.stepMs = 15;
    const queued = await context.server.ok("generate_image", { prompt: "a lighthouse", model: "webui_sd15", seed: 42, count: 2, scheduler: "dpmpp_2m", steps: 20 });
    const steps: number[] = [];
    const watch = setInterval(async () => {
      const step = (await context.server.app.queue.find(queued.jobId))?.progress?.step;
      if (step !== undefined && step !== steps.at(-1)) steps.push(step);
    }, 5);
    const done = await ended(queued.jobId).finally(() => clearInterval(watch));
    expect(done, JSON.stringify(done.error)).toMatchObject({ status: "done", images: [{ seed: 42, width: 256, height: 256 }, { seed: 43 }] });

    const { body, authorization } = context.standIn.requests.at(-1)!;
    expect(body).toMatchObject({
      prompt: "a lighthouse",
      steps: 20,
      width: 256,
      height: 256,
      seed: 42,
      n_iter: 2,
      batch_size: 1,
      sampler_name: "DPM++ 2M",
      override_settings: { sd_model_checkpoint: STAND_IN_MODELS[1] },
    });
    expect(authorization).toBe(`Basic ${Buffer.from("kitty:secret").toString("base64")}`);
    expect(steps.length).toBeGreaterThan(2);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
    expect(Math.max(...steps)).toBeGreaterThan(20);
    expect(Math.max(...steps)).toBeLessThanOrEqual(40);

    const selected = await context.server.ok("select_image", { key: done.images[1].key });
    const png = readFileSync(fileURLToPath(selected.imageRef.downloadUrl));
    expect(readPngInfo(png).text.parameters).toContain("Seed: 43, Size: 256x256");
    expect(selected.metadata).toMatchObject({ engine: "a1111", seed: 43, engineInfo: { all_seeds: [42, 43], version: "v1.10.1-standin" } });
    if (existsSync(RUNNER_PYTHON)) {
      // The web UI writes no preview: the runner's preview code makes it, as for our own images.
      expect(selected.metadata.preview).toMatchObject({ mimeType: "image/webp", width: 256, height: 256 });
      const shown = await context.server.client.callTool({ name: "select_image", arguments: { key: done.images[1].key, preview: true } });
      expect(shown.content.at(-1)).toMatchObject({ type: "image", mimeType: "image/webp" });
    }
  });

  it("names samplers as this web UI does: the Karras schedule apart when it lists no 'DPM++ 2M Karras', and refuses one it lacks", async () => {
    const karras = await ended((await context.server.ok("generate_image", { prompt: "karras", model: "webui_sd15", steps: 2, scheduler: "dpmpp_2m_karras" })).jobId);
    expect(karras).toMatchObject({ status: "done" });
    expect(context.standIn.requests.at(-1)!.body).toMatchObject({ sampler_name: "DPM++ 2M", scheduler: "Karras" });
    const missing = await ended((await context.server.ok("generate_image", { prompt: "unipc", model: "webui_sd15", steps: 2, scheduler: "unipc" })).jobId);
    expect(missing).toMatchObject({ status: "failed", error: { code: "bad_request" } });
    expect(missing.error.message).toMatch(/offers no sampler 'UniPC' \(it has: Euler a, Euler, DPM\+\+ 2M, DDIM, PLMS, Heun\); pick another scheduler$/);
  });

  it("cancels a running job by interrupting the web UI, and stores nothing of it", async () => {
    context.standIn.stepMs = 50;
    const before = (await context.server.ok("list_latest_images", { limit: 1 })).images[0]?.key;
    const queued = await context.server.ok("generate_image", { prompt: "never finished", model: "webui_sd15", steps: 60 });
    await waitUntil("the job reports a step", async () => ((await context.server.app.queue.find(queued.jobId))?.progress?.step ?? 0) > 0, { timeoutMs: 10_000 });
    const interrupts = context.standIn.interrupts;
    await context.server.ok("cancel_job", { jobId: queued.jobId });
    expect(await ended(queued.jobId)).toMatchObject({ status: "cancelled" });
    expect(context.standIn.interrupts).toBe(interrupts + 1);
    expect((await context.server.ok("list_latest_images", { limit: 1 })).images[0]?.key).toBe(before);
  });

  it.each([
    ["an answer without images", "malformed", "engine_failed", /AUTOMATIC1111 at http:\/\/127\.0\.0\.1:\d+ answered \/sdapi\/v1\/txt2img with something other than 1 base64 image\(s\) in 'images': \{"images":"not a list"/],
    ["a page that is not JSON", "not-json", "engine_failed", /answered POST \/sdapi\/v1\/txt2img with something other than JSON: <html>Internal Server Error/],
    ["an HTTP 500", "http-500", "engine_failed", /answered POST \/sdapi\/v1\/txt2img with HTTP 500: .*CUDA out of memory/],
    // The job's deadline: 100 ms + 2 steps x 0.066 MP x 3,000 ms, 493 ms.
    ["no answer in time", "hang", "engine_unreachable", /AUTOMATIC1111 at http:\/\/127\.0\.0\.1:\d+ did not answer POST \/sdapi\/v1\/txt2img within 0\.49 s$/],
    ["an image of another size", "wrong-size", "bad_output", /made a 128x256 image, not the 256x256 asked for; nothing was stored/],
  ] as const)("fails the job on %s, naming the engine, the URL and what came back; the queue goes on", async (_name, mode, code, message) => {
    context.standIn.mode = mode;
    const queued = await context.server.ok("generate_image", { prompt: `misbehaving: ${mode}`, model: "webui_sd15", steps: 2 });
    const failed = await ended(queued.jobId);
    expect(failed).toMatchObject({ status: "failed", error: { code } });
    expect(failed.error.message).toMatch(message);
    context.standIn.mode = "ok";
    expect(await ended((await context.server.ok("generate_image", { prompt: "and the next one works", model: "webui_sd15", steps: 2 })).jobId)).toMatchObject({ status: "done" });
  });

  it("refuses what the web UI engine does not take before queueing it", async () => {
    const existing = (await context.server.ok("list_latest_images", { limit: 1 })).images[0].key;
    for (const [args, expected] of [
      [{ init_image: existing }, "init_image needs a model the diffusers engine runs; model 'webui_sd15' runs on a1111"],
      [{ refiner: true }, "refiner needs a model the diffusers engine runs"],
      [{ loras: [{ name: "x" }] }, "loras needs a model the diffusers engine runs"],
    ] as const) {
      const result = await context.server.client.callTool({ name: "generate_image", arguments: { prompt: "x", model: "webui_sd15", ...args } });
      expect(result.isError).toBe(true);
      expect(errorText(result as never)).toContain(expected);
    }
  });

  it("fails jobs with the engine's address when the web UI is down, says so in list_models, and the server stays up", async () => {
    await context.standIn.close();
    const queued = await context.server.ok("generate_image", { prompt: "nobody home", model: "webui_sd15" });
    const failed = await ended(queued.jobId);
    expect(failed).toMatchObject({ status: "failed", error: { code: "engine_unreachable" } });
    expect(failed.error.message).toMatch(/^AUTOMATIC1111 at http:\/\/127\.0\.0\.1:\d+ could not be reached \(ECONNREFUSED\); is it running with --api\?$/);
    const { models } = await context.server.ok("list_models");
    expect(models.find((model: { name: string }) => model.name === "webui_sd15")).toMatchObject({ present: false, problem: expect.stringContaining("could not be reached") });
    expect((await context.server.ok("list_latest_images", { limit: 1 })).images.length).toBe(1);
  });
});
