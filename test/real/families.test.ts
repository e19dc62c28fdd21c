import { readFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { writeFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { execa } from "execa";
import { FAMILIES } from "../../src/models/families.js";
import { RUNNER_PYTHON } from "../helpers/paths.js";
import { readPng } from "../helpers/png.js";
import { startServer, waitForJob, type RunningServer } from "../helpers/server.js";
import { errorText } from "../helpers/toolCalls.js";

/**
 * Every family in the table beyond SD 1.5 and SDXL (which the rest of the suite covers), each from a flat
 * models.yaml entry naming its tiny random-weight pipeline, over MCP stdio through the real runner: what a user
 * with that family's folder gets.
 */
// Edit-only families (Qwen-Image-Edit) make nothing from text: test/real/editImage.test.ts runs them.
const MODERN = Object.keys(FAMILIES).filter((family) => family !== "sd15" && family !== "sdxl" && !FAMILIES[family]!.editOnly);
/** Families whose transformer is tried alone in one file, with a `base:` folder for the rest. */
const ALONE = ["flux", "zimage"];
const TRANSFORMER_FILES = `
import sys
from pathlib import Path
from diffusers import DiffusionPipeline
from safetensors.torch import save_file
folders, out = Path(sys.argv[1]), Path(sys.argv[2])
for family in ${JSON.stringify(ALONE)}:
    transformer = DiffusionPipeline.from_pretrained(folders / family).transformer
    save_file({name: tensor.contiguous() for name, tensor in transformer.state_dict().items()}, out / f"{family}_transformer.safetensors")
`;
const small = { width: 256, height: 256, steps: 2 };
/** The largest and the mean difference of two images' pixel values (0-255), decoded by PIL. */
const PIXEL_DIFFERENCE = `
import json, sys
import numpy as np
from PIL import Image
a, b = (np.asarray(Image.open(path).convert("RGB"), dtype=np.int16) for path in sys.argv[1:3])
print(json.dumps({"max": int(np.abs(a - b).max()), "mean": float(np.abs(a - b).mean())}))
`;

describe("the modern families through the same tools", () => {
  let server: RunningServer;

  beforeAll(async () => {
    const home = await mkdtemp(path.join(tmpdir(), "kitty-families-"));
    const modelsYaml = path.join(home, "models.yaml");
    // Transformer-only single files, as Civitai ships FLUX and Z-Image finetunes: the tiny folders' own transformers.
    await execa(RUNNER_PYTHON, ["-c", TRANSFORMER_FILES, path.join(inject("tinyModelsDir"), "families"), home], { env: { HF_HUB_OFFLINE: "1" } });
    writeFileSync(
      modelsYaml,
      [
        ...MODERN.map((family) => `tiny_${family}: ${path.join(inject("tinyModelsDir"), "families", family)}\n`),
        `tiny_sdxl: ${path.join(inject("tinyModelsDir"), "sdxl")}\n`,
        `loras: ${path.join(inject("tinyModelsDir"), "families", "loras")}\n`,
        ...ALONE.map((family) => `${family}_file:\n  path: ${path.join(home, `${family}_transformer.safetensors`)}\n  base: ${path.join(inject("tinyModelsDir"), "families", family)}\n`),
      ].join(""),
    );
    server = await startServer({ home, modelsYaml });
  });

  afterAll(async () => {
    await server?.close();
  });

  const pixelsOf = async (key: string) => {
    const selected = await server.ok("select_image", { key });
    return { selected, png: readPng(readFileSync(fileURLToPath(selected.imageRef.downloadUrl))) };
  };
  const made = async (args: Record<string, unknown>) => {
    const status = await waitForJob(server, (await server.ok("generate_image", args)).jobId);
    expect(status, JSON.stringify(status.error)).toMatchObject({ status: "done" });
    return status;
  };

  it("lists each by its family, present, with what it takes", async () => {
    const { models } = await server.ok("list_models");
    for (const family of MODERN) {
      const takes = [...(FAMILIES[family]!.negativePrompt ? ["negative_prompt"] : []), ...(FAMILIES[family]!.pipelines.image ? ["init_image"] : [])];
      expect(models.find((model: { name: string }) => model.name === `tiny_${family}`), family).toMatchObject({ family, present: true, takes: expect.arrayContaining(takes), defaults: { steps: FAMILIES[family]!.defaults.steps } });
    }
  });

  it.each(MODERN)("%s: done, stored with its parameters text and preview, listed, selectable; same seed same pixels, another prompt other pixels", async (family) => {
    const model = `tiny_${family}`;
    const first = await made({ ...small, model, prompt: "a red cube on a desk", seed: 7 });
    expect(first.images[0]).toMatchObject({ width: 256, height: 256, seed: 7 });
    const { selected, png } = await pixelsOf(first.images[0].key);
    expect(selected.metadata).toMatchObject({ family, model, seed: 7, preview: { mimeType: "image/webp" } });
    expect(JSON.parse(png.text["kitty-images"]!)).toMatchObject({ family, seed: 7 });
    expect(png.text.parameters).toMatch(new RegExp(`^a red cube on a desk\\nSteps: 2, .*Seed: 7, Size: 256x256, Model: ${model}`));
    if (FAMILIES[family]!.guidance === "distilled") expect(png.text.parameters).toContain("Distilled CFG Scale: ");
    const listed = await server.ok("list_latest_images", { limit: 1 });
    expect(listed.images[0]).toMatchObject({ key: first.images[0].key, model });

    const again = await pixelsOf((await made({ ...small, model, prompt: "a red cube on a desk", seed: 7 })).images[0].key);
    const other = await pixelsOf((await made({ ...small, model, prompt: "a blue sphere in the snow", seed: 7 })).images[0].key);
    expect(again.png.pixels.equals(png.pixels), "the same seed and prompt made other pixels").toBe(true);
    expect(other.png.pixels.equals(png.pixels), "another prompt made the same pixels").toBe(false);
  });

  it("refuses before queueing what a family cannot use, naming the argument and what the model takes", async () => {
    const refusals: Array<[string, Record<string, unknown>, RegExp]> = [];
    for (const family of MODERN) {
      const spec = FAMILIES[family]!;
      const model = `tiny_${family}`;
      refusals.push([`${family} with a refiner`, { model, refiner: true }, /refiner applies to SDXL models only/]);
      if (spec.sizeMultiple > 8) refusals.push([`${family} at a width off its grid`, { model, width: 264, height: 256 }, new RegExp(`width must be a multiple of ${spec.sizeMultiple}`)]);
      refusals.push([`${family} with an SD scheduler`, { model, scheduler: "euler_a" }, /scheduler euler_a does not fit .*; it takes flow_euler/]);
      if (spec.negativePrompt === true && spec.guidance !== "distilled" && spec.defaults.cfgScale <= (spec.guidanceAbove ?? 1)) {
        refusals.push([`${family} with a negative prompt and no guidance`, { model, negative_prompt: "blurry" }, /negative_prompt needs guidance: cfg_scale is/]);
      }
      if (!spec.negativePrompt) refusals.push([`${family} with a negative prompt`, { model, negative_prompt: "blurry" }, /negative_prompt does not apply/]);
    }
    const before = (await server.ok("list_latest_images", { limit: 200 })).images.length;
    for (const [name, args, message] of refusals) {
      const result = await server.call("generate_image", { prompt: "refused", ...small, ...args });
      expect(result.isError, name).toBe(true);
      expect(errorText(result), name).toMatch(message);
    }
    expect((await server.ok("list_latest_images", { limit: 200 })).images.length).toBe(before);
  });

  it("says when a T5 or LLM encoder could not weight emphasis, and gives the prompt whole", async () => {
    const family = MODERN.find((name) => FAMILIES[name]!.prompt.encoder !== "clip")!;
    const status = await made({ ...small, model: `tiny_${family}`, prompt: "a (red:1.4) cube on a ((wooden)) desk", seed: 3 });
    const text = (await server.call("job_status", { jobId: status.jobId })).content[0];
    expect(text).toMatchObject({ type: "text", text: expect.stringContaining("Emphasis syntax such as (word:1.3) was taken out") });
    const { selected } = await pixelsOf(status.images[0].key);
    expect(selected.metadata.promptNotes).toEqual({ emphasisStripped: true });
    expect(selected.metadata.promptTokens).toBeGreaterThan(0);
  });

  // The recipes the SDXL distillations publish, as a models.yaml `defaults:` line would set them.
  it.each([
    ["SDXL-Turbo", { steps: 1, cfg_scale: 0, scheduler: "euler_a_trailing" }, "Euler a", "SGM Uniform"],
    ["SDXL-Lightning", { steps: 4, cfg_scale: 0, scheduler: "euler_trailing" }, "Euler", "SGM Uniform"],
    ["Hyper-SD", { steps: 2, cfg_scale: 0, scheduler: "tcd" }, "TCD", null],
    ["LCM-LoRA", { steps: 4, cfg_scale: 1.5, scheduler: "lcm" }, "LCM", "SGM Uniform"],
    ["a trailing DDIM", { steps: 3, cfg_scale: 2, scheduler: "ddim_trailing" }, "DDIM", "SGM Uniform"],
  ] as const)("runs the %s recipe on SDXL and records its sampler", async (_recipe, settings, sampler, schedule) => {
    const status = await made({ ...small, model: "tiny_sdxl", prompt: "a few-step fox", seed: 9, ...settings });
    const { selected, png } = await pixelsOf(status.images[0].key);
    expect(selected.metadata).toMatchObject({ family: "sdxl", scheduler: settings.scheduler, stepsRun: settings.steps });
    expect(png.text.parameters).toContain(`Steps: ${settings.steps}, Sampler: ${sampler}, ${schedule ? `Schedule type: ${schedule}, ` : ""}CFG scale: ${settings.cfg_scale}`);
  });

  it.each(MODERN.filter((family) => FAMILIES[family]!.pipelines.image))("%s: repaints a stored image with its own image-to-image pipeline", async (family) => {
    const model = `tiny_${family}`;
    const start = await made({ ...small, model, prompt: "a start image", seed: 21 });
    const repainted = await made({ model, prompt: "the same, repainted", seed: 21, steps: 4, init_image: start.images[0].key, strength: 0.5 });
    const { selected, png } = await pixelsOf(repainted.images[0].key);
    // Unset sizes follow the start image; half the schedule of 4 steps runs over it.
    expect([png.width, png.height]).toEqual([256, 256]);
    expect(selected.metadata).toMatchObject({ family, stepsRun: 2, request: { initImage: { key: start.images[0].key, strength: 0.5 } } });
    expect(png.text.parameters).toContain("Denoising strength: 0.5");
  });

  it("refuses init_image for a family diffusers has no image-to-image pipeline for, before queueing", async () => {
    const family = MODERN.find((name) => !FAMILIES[name]!.pipelines.image)!;
    const start = await made({ ...small, model: `tiny_${family}`, prompt: "a start image", seed: 22 });
    const result = await server.call("generate_image", { model: `tiny_${family}`, prompt: "repaint", init_image: start.images[0].key });
    expect(result.isError).toBe(true);
    expect(errorText(result)).toMatch(new RegExp(`init_image does not apply: model 'tiny_${family}' is .*, which takes`));
    // Nor can it upscale (a resize and an image-to-image pass): the refusal names the model.
    const upscale = await server.call("upscale_image", { image: start.images[0].key });
    expect(upscale.isError).toBe(true);
    expect(errorText(upscale)).toMatch(new RegExp(`upscale_image cannot run on this model: init_image does not apply: model 'tiny_${family}'`));
  });

  it.each(ALONE)("%s: a transformer-only single file loads with its base: folder, and makes what the whole folder makes", async (family) => {
    const { models } = await server.ok("list_models");
    expect(models.find((model: { name: string }) => model.name === `${family}_file`)).toMatchObject({ family, present: true });
    const args = { ...small, prompt: "a file of its own", seed: 31 };
    const fromFile = await pixelsOf((await made({ ...args, model: `${family}_file` })).images[0].key);
    const fromFolder = await pixelsOf((await made({ ...args, model: `tiny_${family}` })).images[0].key);
    expect(fromFile.selected.metadata).toMatchObject({ family, model: `${family}_file` });
    // The same weights, loaded another way, lay out their tensors differently: sums round apart by ~1e-7, which may
    // move a pixel by a level or two after sampling. A transformer that is not the folder's moves every pixel.
    const pngPath = (selected: Record<string, any>) => fileURLToPath(selected.imageRef.downloadUrl as string);
    const { stdout } = await execa(RUNNER_PYTHON, ["-c", PIXEL_DIFFERENCE, pngPath(fromFile.selected), pngPath(fromFolder.selected)]);
    const { max, mean } = JSON.parse(stdout) as { max: number; mean: number };
    expect(max, "the same weights made other pixels").toBeLessThanOrEqual(8);
    expect(mean, "the same weights made other pixels").toBeLessThan(0.5);
  });

  it("applies a LoRA on a transformer family's pipeline (PEFT), and none leaves the pixels of a model that never had one", async () => {
    const { loras } = await server.ok("list_models");
    // FLUX.1 and Chroma LoRAs share block names: the family is left to the runner, which tells on load.
    expect(loras).toEqual([{ name: "tiny_flux_detail", family: null }]);
    const args = { ...small, model: "tiny_flux", prompt: "a fox with a LoRA", seed: 41 };
    const plain = await pixelsOf((await made(args)).images[0].key);
    const styled = await pixelsOf((await made({ ...args, loras: [{ name: "tiny_flux_detail", weight: 1 }] })).images[0].key);
    const plainAgain = await pixelsOf((await made(args)).images[0].key);
    expect(styled.png.pixels.equals(plain.png.pixels), "the LoRA changed nothing").toBe(false);
    expect(plainAgain.png.pixels.equals(plain.png.pixels), "the LoRA stayed on for the next job").toBe(true);
    expect(styled.png.text.parameters).toContain('Lora weights: "tiny_flux_detail: 1"');
  });

  it("refuses, as the job's error, a transformer LoRA on another family (diffusers cannot place it)", async () => {
    const status = await waitForJob(server, (await server.ok("generate_image", { ...small, model: "tiny_zimage", prompt: "wrong LoRA", loras: [{ name: "tiny_flux_detail", weight: 1 }] })).jobId);
    expect(status).toMatchObject({ status: "failed", error: { code: "bad_request", message: expect.stringMatching(/LoRA tiny_flux_detail does not fit this zimage model/) } });
  });
});
