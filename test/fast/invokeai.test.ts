import { describe, expect, it } from "vitest";
import { InvokeAIEngine } from "../../src/engines/invokeai.js";
import { INVOKE_MODELS, startInvokeStandIn } from "../helpers/invokeStandIn.js";
import { configuredEngine, useEngineApp } from "../helpers/engineApp.js";
import { waitUntil } from "../helpers/waitUntil.js";

/**
 * The InvokeAI engine behind the real app and tools, against a stand-in of its API (a real InvokeAI run is the
 * opt-in test/invokeai.test.ts): SD 1.5 and SDXL graphs, seeds per image, steps from socket.io, cancel, a failed
 * item, no socket, InvokeAI down. IMAGE_ENGINE=invokeai: flat entries name InvokeAI's models.
 */
describe("IMAGE_ENGINE=invokeai: InvokeAI's session queue generates, our queue, storage and index do the rest", () => {
  const context = useEngineApp(startInvokeStandIn, ["dream: dreamshaper_8", "jugg:", "  model: juggernaut_xl", "  defaults: {width: 256, height: 256, steps: 6}"], (standIn) => ({
    IMAGE_ENGINE: "invokeai",
    INVOKE_HOST: "127.0.0.1",
    INVOKE_PORT: new URL(standIn.url).port,
  }), {
    // An item's deadline: 100 ms + 3 s per step of a megapixel (production's), ~200 ms per step at 256x256, many
    // times what the stand-in's steps take.
    invokeai: { jobBaseMs: 100, msPerMegapixelStep: 3_000 },
  });

  it("takes its waits from the config: INVOKEAI_TIMEOUT_SECONDS as the deadline's base, production's polls", () => {
    const engine = configuredEngine("invokeai", { INVOKEAI_TIMEOUT_SECONDS: "7" });
    expect(engine).toBeInstanceOf(InvokeAIEngine);
    expect((engine as InvokeAIEngine).timing).toEqual({ callMs: 10_000, pollMs: 500, jobBaseMs: 7_000, msPerMegapixelStep: 3_000 });
  });

  it("lists InvokeAI's SD 1.5 and SDXL models (not the ones this engine cannot drive)", async () => {
    const { models } = await context.server.ok("list_models");
    expect(models.map((model: { name: string; engine: string; family: string; present: boolean }) => [model.name, model.engine, model.family, model.present])).toEqual([
      ["dream", "invokeai", "sd15", true],
      ["jugg", "invokeai", "sdxl", true],
    ]);
    expect(models.some((model: { name: string }) => model.name === INVOKE_MODELS[2]!.name)).toBe(false);
  });

  it("enqueues an SD 1.5 graph per image with seeds seed, seed+1, shows its steps from socket.io, and stores InvokeAI's PNGs", async () => {
    context.standIn.stepMs = 20;
    const queued = await context.server.ok("generate_image", { prompt: "a lantern", negative_prompt: "dark", model: "dream", width: 256, height: 256, steps: 10, seed: 3, count: 2, scheduler: "dpmpp_2m_karras" });
    const steps: number[] = [];
    const watch = setInterval(async () => {
      const step = (await context.server.app.queue.find(queued.jobId))?.progress?.step;
      if (step !== undefined && step !== steps.at(-1)) steps.push(step);
    }, 5);
    const done = await context.server.ended(queued.jobId).finally(() => clearInterval(watch));
    expect(done, JSON.stringify(done.error)).toMatchObject({ status: "done", images: [{ seed: 3, width: 256, height: 256 }, { seed: 4 }] });
    const [first, second] = context.standIn.graphs.slice(-2);
    expect(first!.nodes).toMatchObject({
      model: { type: "main_model_loader", model: { key: "k-sd15", name: "dreamshaper_8", base: "sd-1" } },
      positive: { type: "compel", prompt: "a lantern" },
      negative: { type: "compel", prompt: "dark" },
      noise: { type: "noise", seed: 3, width: 256, height: 256 },
      denoise: { type: "denoise_latents", steps: 10, cfg_scale: 7, scheduler: "dpmpp_2m_k" },
      decode: { type: "l2i", is_intermediate: false },
    });
    expect(second!.nodes.noise.seed).toBe(4);
    expect(first!.edges).toContainEqual({ source: { node_id: "noise", field: "noise" }, destination: { node_id: "denoise", field: "noise" } });
    expect(context.standIn.subscribed).toBeGreaterThan(0);
    expect(steps.length).toBeGreaterThan(2);
    expect([...steps].sort((a, b) => a - b)).toEqual(steps);
    expect((await context.server.ok("select_image", { key: done.images[1].key })).metadata).toMatchObject({ engine: "invokeai", seed: 4, engineInfo: { model: { name: "dreamshaper_8" } } });
  });

  it("builds the SDXL graph for an SDXL model: both CLIPs, the SDXL prompt node with the target size", async () => {
    const done = await context.server.ended((await context.server.ok("generate_image", { prompt: "xl", model: "jugg" })).jobId);
    expect(done).toMatchObject({ status: "done", images: [{ width: 256, height: 256 }] });
    const graph = context.standIn.graphs.at(-1)!;
    expect(graph.nodes).toMatchObject({ model: { type: "sdxl_model_loader" }, positive: { type: "sdxl_compel_prompt", prompt: "xl", style: "xl", target_width: 256, target_height: 256 } });
    expect(graph.edges).toContainEqual({ source: { node_id: "model", field: "clip2" }, destination: { node_id: "positive", field: "clip2" } });
  });

  it("cancels through InvokeAI's queue; a failed item or a nonsense answer fails the job, saying what came back; no socket still finishes", async () => {
    context.standIn.stepMs = 40;
    const running = await context.server.ok("generate_image", { prompt: "stop me", model: "dream", width: 256, height: 256, steps: 60 });
    await waitUntil("the job reports a step", async () => ((await context.server.app.queue.find(running.jobId))?.progress?.step ?? 0) > 0, { timeoutMs: 10_000 });
    await context.server.ok("cancel_job", { jobId: running.jobId });
    expect(await context.server.ended(running.jobId)).toMatchObject({ status: "cancelled" });
    expect(context.standIn.cancels.length).toBe(1);

    context.standIn.stepMs = 5;
    context.standIn.mode = "fails";
    const failed = await context.server.ended((await context.server.ok("generate_image", { prompt: "breaks", model: "dream", width: 256, height: 256, steps: 3 })).jobId);
    expect(failed).toMatchObject({ status: "failed", error: { code: "generation_failed" } });
    expect(failed.error.message).toMatch(/^InvokeAI at http:\/\/127\.0\.0\.1:\d+ failed queue item \d+: RuntimeError: Expected all tensors to be on the same device$/);

    context.standIn.mode = "nonsense";
    const confused = await context.server.ended((await context.server.ok("generate_image", { prompt: "what", model: "dream", width: 256, height: 256, steps: 3 })).jobId);
    expect(confused).toMatchObject({ status: "failed", error: { code: "engine_failed" } });
    expect(confused.error.message).toMatch(/answered \/api\/v1\/queue\/default\/i\/\d+ with something other than a queue item status: \{"detail":"<html>gateway<\/html>"\}$/);

    context.standIn.mode = "no-socket";
    expect(await context.server.ended((await context.server.ok("generate_image", { prompt: "quiet", model: "dream", width: 256, height: 256, steps: 3 })).jobId)).toMatchObject({ status: "done" });
  });

  it("gives up on an item that never runs at its deadline, cancelling it in InvokeAI", async () => {
    context.standIn.mode = "stuck";
    const cancels = context.standIn.cancels.length;
    const failed = await context.server.ended((await context.server.ok("generate_image", { prompt: "waits forever", model: "dream", width: 256, height: 256, steps: 1 })).jobId);
    expect(failed).toMatchObject({ status: "failed", error: { code: "engine_unreachable" } });
    // 100 ms + 1 step x 0.066 MP x 3,000 ms: 297 ms.
    expect(failed.error.message).toMatch(/^InvokeAI at http:\/\/127\.0\.0\.1:\d+ did not finish queue item \d+ within 0\.3 s; it was cancelled there$/);
    expect(context.standIn.cancels.length).toBe(cancels + 1);
  });

  it("fails with InvokeAI's address when it is down", async () => {
    await context.standIn.close();
    const failed = await context.server.ended((await context.server.ok("generate_image", { prompt: "nobody", model: "dream", width: 256, height: 256 })).jobId);
    expect(failed).toMatchObject({ status: "failed", error: { code: "engine_unreachable" } });
    expect(failed.error.message).toMatch(/^InvokeAI at http:\/\/127\.0\.0\.1:\d+ could not be reached .*is invokeai-web running\?$/);
  });
});
