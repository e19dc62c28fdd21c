import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInProcess, type InProcessServer } from "../helpers/inProcess.js";
import { errorText } from "../helpers/toolCalls.js";

/** generate_image's outpaint as the server resolves it (the canvas, the rounding, the refusals), around the stand-in engine. */
describe("outpaint", () => {
  let server: InProcessServer;
  let source: string;

  beforeAll(async () => {
    server = await startInProcess();
    const queued = await server.ok("generate_image", { prompt: "a workbench", model: "tiny_sd15", width: 256, height: 256, seed: 3 });
    source = (await server.ok("job_status", { jobId: queued.jobId, wait_seconds: 10 })).images[0].key;
  });
  afterAll(async () => {
    await server?.close();
  });

  it("grows the canvas by the sides asked, rounds it up to the size multiple on the right and bottom, and says so", async () => {
    const result = await server.call("generate_image", { prompt: "a wider workbench", init_image: source, outpaint: { left: 32, bottom: 20 } });
    expect(result.isError).toBeFalsy();
    const queued = result.structuredContent as { jobId: string; width: number; height: number };
    expect(queued).toMatchObject({ width: 288, height: 280 });
    expect(errorText(result)).toContain("Outpaint adds 32 px left, 0 right, 0 top, 24 bottom (right and bottom rounded up to the model's size multiple)");
    const done = await server.ok("job_status", { jobId: queued.jobId, wait_seconds: 10 });
    expect(done).toMatchObject({ status: "done", images: [{ width: 288, height: 280 }] });
    expect(server.engine.calls.at(-1)).toMatchObject({ width: 288, height: 280, initImage: { key: source, strength: 1 }, outpaint: { left: 32, right: 0, top: 0, bottom: 24 } });
    const selected = await server.ok("select_image", { key: done.images[0].key });
    expect(selected.metadata).toMatchObject({ parents: [source], request: { outpaint: { left: 32, bottom: 24 } } });
  });

  it("refuses, naming the field, what cannot be outpainted", async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ outpaint: { left: 64 } }, /outpaint extends a start image: give init_image too/],
      [{ init_image: "KEY", outpaint: { left: 64 }, width: 512 }, /width follows from outpaint .*: leave it out/],
      [{ init_image: "KEY", outpaint: {} }, /outpaint adds nothing: give left, right, top or bottom in pixels/],
      [{ init_image: "KEY", outpaint: { right: 1024, left: 1024 } }, /outpaint makes 256x256 2304x256, past the 2048 px limit/],
      [{ init_image: "KEY", outpaint: { left: -1 } }, /outpaint.left must be an integer between 0 and 1024 pixels \(got -1\)/],
      [{ init_image: "KEY", outpaint: { middle: 8 } }, /outpaint/],
    ];
    for (const [args, message] of cases) {
      const result = await server.call("generate_image", { prompt: "x", model: "tiny_sd15", ...JSON.parse(JSON.stringify(args).replace("KEY", source)) });
      expect(result.isError, JSON.stringify(args)).toBe(true);
      expect(errorText(result)).toMatch(message);
    }
  });
});
