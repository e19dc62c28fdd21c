import { existsSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startInProcess, type InProcessServer } from "../helpers/inProcess.js";
import { errorText } from "../helpers/toolCalls.js";

/** A prompt's cost for the chunked (CLIP) families is bounded in tokens before it is queued, not in characters. */
describe("the CLIP prompt token cap", () => {
  let server: InProcessServer;
  beforeAll(async () => {
    server = await startInProcess();
    expect(existsSync(server.app.config.runner.clipVocab), `CLIP's vocabulary at ${server.app.config.runner.clipVocab} (npm run setup fetches it)`).toBe(true);
  });
  afterAll(async () => {
    await server?.close();
  });

  it("takes 2,000 characters of English (a few hundred tokens), and refuses 2,000 of CJK (thousands), with the count and the cap, queueing nothing", async () => {
    const english = "a lighthouse on a cliff at dusk, oil painting, ".repeat(42).slice(0, 2000);
    expect((await server.ok("generate_image", { prompt: english, model: "tiny_sd15" })).jobId).toEqual(expect.any(String));
    const before = (await server.app.queue.counts()).queued;
    const cjk = "東京の夜景とネオンの光".repeat(200).slice(0, 2000);
    const refused = await server.call("generate_image", { prompt: cjk, model: "tiny_sd15" });
    expect(refused.isError).toBe(true);
    expect(errorText(refused)).toMatch(/^invalid_argument: prompt is \d{4} CLIP tokens; model 'tiny_sd15' \(sd15\) encodes it 75 tokens at a time, and this server takes at most 1000 \(KITTY_IMAGES_PROMPT_TOKEN_CAP\): shorten it$/);
    const negative = await server.call("generate_image", { prompt: "a fox", negative_prompt: cjk, model: "tiny_sdxl" });
    expect(errorText(negative)).toMatch(/^invalid_argument: negative_prompt is \d{4} CLIP tokens; model 'tiny_sdxl' \(sdxl\)/);
    expect((await server.app.queue.counts()).queued).toBe(before);
  });
});
