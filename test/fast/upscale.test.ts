import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInProcess, type InProcessServer } from "../helpers/inProcess.js";
import { errorText } from "../helpers/toolCalls.js";

/** upscale_image over MCP in one process: the real queue, worker, storage and index around the stand-in engine. */
describe("upscale_image", () => {
  let server: InProcessServer;
  let source: { key: string; jobId: string };

  beforeAll(async () => {
    server = await startInProcess();
    const queued = await server.ok("generate_image", { prompt: "a brass gear", negative_prompt: "rust", model: "tiny_sd15", width: 320, height: 256, seed: 7, steps: 10 });
    const done = await server.ok("job_status", { jobId: queued.jobId, wait_seconds: 10 });
    source = { key: done.images[0].key, jobId: queued.jobId };
  });
  afterAll(async () => {
    await server?.close();
  });

  it("queues the source at twice its size as a light image-to-image pass with its own prompt, model and seed, and records the parent", async () => {
    const queued = await server.ok("upscale_image", { image: source.key });
    expect(queued).toMatchObject({ position: 1, width: 640, height: 512 });
    const done = await server.ok("job_status", { jobId: queued.jobId, wait_seconds: 10 });
    expect(done).toMatchObject({ status: "done", images: [{ width: 640, height: 512, seed: 7 }] });
    const asked = server.engine.calls.at(-1)!;
    expect(asked).toMatchObject({ prompt: "a brass gear", negativePrompt: "rust", width: 640, height: 512, seed: 7, initImage: { key: source.key, strength: 0.3 }, upscale: { scale: 2, mode: "hires" } });
    const selected = await server.ok("select_image", { key: done.images[0].key });
    expect(selected.metadata).toMatchObject({ parents: [source.key], request: { upscale: { scale: 2, mode: "hires" } } });
  });

  it("takes another prompt, strength and scale, and an imageRef for the image", async () => {
    const { imageRef } = await server.ok("select_image", { key: source.key });
    const queued = await server.ok("upscale_image", { image: imageRef.downloadUrl, scale: 4, prompt: "a brass gear, fine engraving", strength: 0.5 });
    expect(queued).toMatchObject({ width: 1280, height: 1024 });
    await server.ok("job_status", { jobId: queued.jobId, wait_seconds: 10 });
    expect(server.engine.calls.at(-1)).toMatchObject({ prompt: "a brass gear, fine engraving", steps: 10, initImage: { strength: 0.5 }, upscale: { scale: 4 } });
  });

  it("refuses, naming the argument, a scale past the size limit, a scale other than 2 or 4, and an image that is not here", async () => {
    const big = await server.ok("generate_image", { prompt: "wide", model: "tiny_sd15", width: 1024, height: 576 });
    const bigKey = (await server.ok("job_status", { jobId: big.jobId, wait_seconds: 10 })).images[0].key;
    const over = await server.call("upscale_image", { image: bigKey, scale: 4 });
    expect(over.isError).toBe(true);
    expect(errorText(over)).toMatch(/scale 4 makes 1024x576 4096x2304, past the 2048 px limit; use scale 2/);
    const three = await server.call("upscale_image", { image: source.key, scale: 3 });
    expect(errorText(three)).toMatch(/scale must be 2 or 4/);
    const missing = await server.call("upscale_image", { image: "images/20260101_000000_nothere.png" });
    expect(errorText(missing)).toMatch(/image 'images\/20260101_000000_nothere.png' is not an image of this server/);
  });
});
