import { mkdtemp } from "node:fs/promises";
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { generateDone } from "../helpers/jobs.js";
import { makePng, readPng } from "../helpers/png.js";
import { startServer, waitForJob, type RunningServer } from "../helpers/server.js";
import { errorText } from "../helpers/toolCalls.js";

const picture = (shade: (x: number, y: number) => number, width = 320, height = 256) => `data:image/png;base64,${makePng(width, height, {}, shade).toString("base64")}`;

/**
 * edit_image over MCP stdio with the real runner, on the tiny FLUX.1 Kontext and FLUX.2 klein: an edit is a job
 * like any other (queued, done, stored, its image and references its parents), steered by both the image and the
 * instruction; a model that cannot edit is refused by name, and so are more references than a model takes.
 */
describe("edit_image on the edit families", () => {
  let server: RunningServer;
  const families = path.join(inject("tinyModelsDir"), "families");

  beforeAll(async () => {
    const home = await mkdtemp(path.join(tmpdir(), "kitty-edit-"));
    const modelsYaml = path.join(home, "models.yaml");
    writeFileSync(
      modelsYaml,
      [
        `tiny_sd15: ${path.join(inject("tinyModelsDir"), "sd15")}`,
        "tiny_kontext:",
        `  path: ${path.join(families, "fluxkontext")}`,
        "  defaults: {steps: 2}",
        "tiny_klein:",
        `  path: ${path.join(families, "flux2klein")}`,
        "  defaults: {steps: 2}",
        "tiny_qwen_edit:",
        `  path: ${path.join(families, "qwenimageedit")}`,
        "  defaults: {steps: 2, cfg_scale: 1}",
        "",
      ].join("\n"),
    );
    server = await startServer({ home, modelsYaml }, { KITTY_IMAGES_STORAGE: "local" });
  });
  afterAll(async () => {
    await server?.close();
  });

  /** The image as select_image names it: local storage, so its storageUri is the file. */
  const stored = async (key: string) => {
    const selected = await server.ok("select_image", { key });
    return { selected, png: readPng(readFileSync(new URL(selected.imageRef.storageUri))) };
  };
  const gradient = picture((x) => (x * 255) / 320);
  const rings = picture((x, y) => (Math.hypot(x - 160, y - 128) % 40 < 20 ? 230 : 30));
  const editDone = async (args: Record<string, unknown>) => {
    const queued = await server.ok("edit_image", args);
    const status = await waitForJob(server, queued.jobId);
    expect(status.status, JSON.stringify(status)).toBe("done");
    return { queued, status, ...(await stored(status.images[0].key)) };
  };

  it("edits with FLUX.1 Kontext at the image's size; the image and the instruction both steer; the image is the parent", async () => {
    const first = await editDone({ image: gradient, instruction: "make the sky red", model: "tiny_kontext", seed: 4 });
    expect(first.status.images[0]).toMatchObject({ width: 320, height: 256, seed: 4 });
    expect(first.selected.metadata).toMatchObject({ model: "tiny_kontext", request: { prompt: "make the sky red", edit: { keys: [expect.stringMatching(/^uploads\//)] } } });
    expect(first.selected.metadata.parents).toEqual(first.selected.metadata.request.edit.keys);
    expect(first.png.text.parameters).toContain("Edit images: 1");
    const otherImage = await editDone({ image: rings, instruction: "make the sky red", model: "tiny_kontext", seed: 4 });
    const otherWords = await editDone({ image: gradient, instruction: "make it night", model: "tiny_kontext", seed: 4 });
    expect(otherImage.png.pixels.equals(first.png.pixels)).toBe(false);
    expect(otherWords.png.pixels.equals(first.png.pixels)).toBe(false);
    // The result is an image of this server like any other: the next edit can start from it by key.
    const chained = await editDone({ image: first.status.images[0].key, instruction: "add a moon", model: "tiny_kontext" });
    expect(chained.selected.metadata.parents).toEqual([first.status.images[0].key]);
  });

  it("takes reference images on FLUX.2 klein, and picks an editing model when none is named", async () => {
    const alone = await editDone({ image: gradient, instruction: "a bracket in this style", model: "tiny_klein", seed: 9 });
    const withReference = await editDone({ image: gradient, references: [rings], instruction: "a bracket in this style", model: "tiny_klein", seed: 9 });
    expect(withReference.selected.metadata.parents).toHaveLength(2);
    expect(withReference.png.pixels.equals(alone.png.pixels)).toBe(false);
    // The default model (tiny_sd15) does not edit: the first model that does is taken.
    const unnamed = await server.ok("edit_image", { image: gradient, instruction: "brighter" });
    expect((await waitForJob(server, unnamed.jobId)).model).toBe("tiny_kontext");
  });

  it("refuses a model that cannot edit, by name and with those that can, and more references than a model takes", async () => {
    const sd = await server.call("edit_image", { image: gradient, instruction: "x", model: "tiny_sd15" });
    expect(errorText(sd)).toMatch(/model 'tiny_sd15' is Stable Diffusion 1\.5, which does not edit images by instruction; models that do: tiny_kontext, tiny_klein, tiny_qwen_edit/);
    const tooMany = await server.call("edit_image", { image: gradient, references: [rings], instruction: "x", model: "tiny_kontext" });
    expect(errorText(tooMany)).toMatch(/model 'tiny_kontext' \(FLUX\.1 Kontext\) takes no reference images \(got 1\)/);
    const blank = await server.call("edit_image", { image: gradient, instruction: "   ", model: "tiny_kontext" });
    expect(errorText(blank)).toMatch(/instruction must not be blank/);
    const { models } = await server.ok("list_models");
    const takes = Object.fromEntries(models.map((model: { name: string; takes?: string[] }) => [model.name, model.takes ?? []]));
    expect(takes.tiny_kontext).toContain("edit");
    expect(takes.tiny_klein).toContain("edit");
    expect(takes.tiny_sd15).not.toContain("edit");
  });

  it("edits with Qwen-Image-Edit (its processor reads the pictures), which makes nothing from text alone", async () => {
    const edited = await editDone({ image: gradient, references: [rings], instruction: "paint it blue", model: "tiny_qwen_edit", seed: 2 });
    expect(edited.status.images[0]).toMatchObject({ width: 320, height: 256 });
    expect(edited.selected.metadata.parents).toHaveLength(2);
    const fromText = await server.call("generate_image", { model: "tiny_qwen_edit", prompt: "a gear" });
    expect(errorText(fromText)).toMatch(/model 'tiny_qwen_edit' is Qwen-Image-Edit, which edits images only: call edit_image/);
  });

  it("makes an image from text alone on Kontext too, through generate_image", async () => {
    const { status } = await generateDone(server, { model: "tiny_kontext", prompt: "a brass gear", width: 256, height: 256 });
    expect(status.images[0]).toMatchObject({ width: 256, height: 256 });
  });
});
