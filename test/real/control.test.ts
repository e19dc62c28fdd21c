import { mkdtemp } from "node:fs/promises";
import { readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { downloadImage, generateDone, serverOnMinio } from "../helpers/jobs.js";
import { makeMaskPng, makePng, readPng } from "../helpers/png.js";
import { startServer, type RunningServer } from "../helpers/server.js";
import { errorText } from "../helpers/toolCalls.js";

/** A CAD-like render: a dark outline on white, a box or a ring, as a data: URL. */
function render(shape: "box" | "ring"): string {
  const line = (x: number, y: number) => {
    if (shape === "box") return (x >= 60 && x <= 196 && (Math.abs(y - 70) < 3 || Math.abs(y - 186) < 3)) || (y >= 70 && y <= 186 && (Math.abs(x - 60) < 3 || Math.abs(x - 196) < 3));
    return Math.abs(Math.hypot(x - 128, y - 128) - 90) < 3;
  };
  return `data:image/png;base64,${makePng(256, 256, {}, (x, y) => (line(x, y) ? 0 : 255)).toString("base64")}`;
}

/**
 * ControlNet over MCP stdio with the real runner and MinIO, with tiny ControlNets in models.yaml's `controlnets`
 * folder: canny edges made from a render steer the image, another render steers it elsewhere (the wiring is real),
 * two maps at once, what the folder offers listed per model, and what cannot run refused before queueing.
 */
describe("ControlNet maps on generate_image, with tiny ControlNets from the folder", () => {
  const servers = serverOnMinio("kitty-control");
  const small = { model: "tiny_sd15", width: 256, height: 256, steps: 3, seed: 11, prompt: "a machined bracket" };
  const pixelsOf = async (key: string) => (await downloadImage(servers.server, key)).png.pixels;

  it("lists the map types each model's ControlNets read: SD 1.5's canny and depth, SDXL's union all", async () => {
    const { models } = await servers.server.ok("list_models");
    const byName = Object.fromEntries(models.map((model: { name: string; control?: string[] }) => [model.name, model.control]));
    expect(byName.tiny_sd15).toEqual(["canny", "depth"]);
    expect(byName.tiny_sdxl).toEqual(["canny", "lineart", "depth", "normal", "scribble", "pose", "tile"]);
  });

  it("follows a canny map made from a render: other pixels than without, others again for another render, the map a parent", async () => {
    const plain = await generateDone(servers.server, small);
    const boxed = await generateDone(servers.server, { ...small, control: [{ image: render("box"), type: "canny" }] });
    const ringed = await generateDone(servers.server, { ...small, control: [{ image: render("ring"), type: "canny" }] });
    expect(boxed.queued.jobId).toBeDefined();
    const [a, b, c] = await Promise.all([plain, boxed, ringed].map((run) => pixelsOf(run.status.images[0].key)));
    expect(b!.equals(a!), "control changes the image").toBe(false);
    expect(b!.equals(c!), "another map, other pixels").toBe(false);

    const { selected } = await downloadImage(servers.server, boxed.status.images[0].key);
    expect(selected.metadata).toMatchObject({
      options: { controlNet: true },
      request: { control: [{ controlnet: "sd15_canny", type: "canny", strength: 1, start: 0, end: 1, preprocess: true }] },
    });
    expect(selected.metadata.parents).toEqual([selected.metadata.request.control[0].key]);
    expect(selected.metadata.parents[0]).toMatch(/^uploads\//);
  });

  it("takes two maps at once (canny made here, a ready depth map), with strength and schedule, and says which ControlNet reads each", async () => {
    const queued = await servers.server.call("generate_image", {
      ...small,
      control: [
        { image: render("box"), type: "canny", strength: 0.8, end: 0.8 },
        { image: render("ring"), type: "depth", preprocess: false },
      ],
    });
    expect(queued.isError).toBeFalsy();
    const text = (queued.content as Array<{ text: string }>)[0]!.text;
    expect(text).toContain("Control: canny via sd15_canny, depth via sd15_depth.");
    const jobId = (queued.structuredContent as { jobId: string }).jobId;
    const status = await servers.server.ok("job_status", { jobId, wait_seconds: 50 });
    expect(status.status).toBe("done");
  });

  it("refuses before queueing, naming the field: a type no ControlNet reads, three maps, a strength out of range, control with a mask", async () => {
    const noNormal = await servers.server.call("generate_image", { ...small, control: [{ image: render("box"), type: "normal" }] });
    expect(errorText(noNormal)).toMatch(/control\[0\]\.type: no Stable Diffusion 1\.5 ControlNet for 'normal' maps in .*controlnets \(Stable Diffusion 1\.5 ones there: sd15_canny \(canny\), sd15_depth \(depth\)\)/);
    const three = await servers.server.call("generate_image", { ...small, control: [1, 2, 3].map(() => ({ image: render("box"), type: "canny" })) });
    expect(errorText(three)).toMatch(/control takes at most 2 maps \(got 3\)/);
    const strong = await servers.server.call("generate_image", { ...small, control: [{ image: render("box"), type: "canny", strength: 5 }] });
    expect(errorText(strong)).toMatch(/control\[\]\.strength must be a number between 0 and 2 \(got 5\)/);
    const backwards = await servers.server.call("generate_image", { ...small, control: [{ image: render("box"), type: "canny", start: 0.7, end: 0.2 }] });
    expect(errorText(backwards)).toMatch(/control\[0\]\.start \(0\.7\) must come before its end \(0\.2\)/);
    const unknownType = await servers.server.call("generate_image", { ...small, control: [{ image: render("box"), type: "segmentation" }] });
    expect(errorText(unknownType)).toMatch(/control\[\]\.type must be one of canny, lineart, depth, normal, scribble, pose, tile/);
    const mask = `data:image/png;base64,${makeMaskPng(256, 256, { x: 64, y: 64, size: 64 }).toString("base64")}`;
    const masked = await servers.server.call("generate_image", { ...small, init_image: render("box"), mask, control: [{ image: render("ring"), type: "canny" }] });
    expect(errorText(masked)).toMatch(/control goes with text-to-image and init_image here, not with mask or outpaint/);
  });
});

describe("ControlNet on FLUX.1, through its own ControlNet class", () => {
  let server: RunningServer;

  beforeAll(async () => {
    const home = await mkdtemp(path.join(tmpdir(), "kitty-flux-control-"));
    const modelsYaml = path.join(home, "models.yaml");
    const tiny = inject("tinyModelsDir");
    writeFileSync(modelsYaml, [`tiny_flux: ${path.join(tiny, "families", "flux")}`, `controlnets: ${path.join(tiny, "controlnets")}`, ""].join("\n"));
    server = await startServer({ home, modelsYaml }, { KITTY_IMAGES_STORAGE: "local" });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("lists FLUX's canny ControlNet, follows a render's edges with it, and another render gives other pixels", async () => {
    const { models } = await server.ok("list_models");
    expect(models.find((model: { name: string }) => model.name === "tiny_flux").control).toEqual(["canny"]);
    const flux = { model: "tiny_flux", width: 256, height: 256, steps: 2, seed: 3, prompt: "a bracket" };
    const stored = async (args: Record<string, unknown>) => {
      const { status } = await generateDone(server, args);
      const selected = await server.ok("select_image", { key: status.images[0].key });
      return { selected, pixels: readPng(readFileSync(new URL(selected.imageRef.storageUri))).pixels };
    };
    const plain = await stored(flux);
    const boxed = await stored({ ...flux, control: [{ image: render("box"), type: "canny" }] });
    const ringed = await stored({ ...flux, control: [{ image: render("ring"), type: "canny" }] });
    expect(boxed.pixels.equals(plain.pixels)).toBe(false);
    expect(boxed.pixels.equals(ringed.pixels)).toBe(false);
    expect(boxed.selected.metadata).toMatchObject({ options: { controlNet: true }, request: { control: [{ controlnet: "flux_canny" }] } });
    const depth = await server.call("generate_image", { ...flux, control: [{ image: render("box"), type: "depth" }] });
    expect(errorText(depth)).toMatch(/control\[0\]\.type: no FLUX\.1 .*ControlNet for 'depth' maps in .*\(FLUX\.1 .* ones there: flux_canny \(canny\)\)/);
  });
});

describe("ControlNet on Z-Image: one map over the whole schedule", () => {
  let server: RunningServer;

  beforeAll(async () => {
    const home = await mkdtemp(path.join(tmpdir(), "kitty-zimage-control-"));
    const modelsYaml = path.join(home, "models.yaml");
    const tiny = inject("tinyModelsDir");
    writeFileSync(modelsYaml, [`tiny_zimage: ${path.join(tiny, "families", "zimage")}`, `controlnets: ${path.join(tiny, "controlnets")}`, ""].join("\n"));
    server = await startServer({ home, modelsYaml }, { KITTY_IMAGES_STORAGE: "local" });
  });
  afterAll(async () => {
    await server?.close();
  });

  it("follows a canny map with Z-Image's ControlNet, and refuses two maps or a share of the schedule before queueing", async () => {
    const zimage = { model: "tiny_zimage", width: 256, height: 256, steps: 2, seed: 3, prompt: "a bracket" };
    const pixelsOf = async (args: Record<string, unknown>) => {
      const { status } = await generateDone(server, args);
      const selected = await server.ok("select_image", { key: status.images[0].key });
      return readPng(readFileSync(new URL(selected.imageRef.storageUri))).pixels;
    };
    const plain = await pixelsOf(zimage);
    const boxed = await pixelsOf({ ...zimage, control: [{ image: render("box"), type: "canny" }] });
    const ringed = await pixelsOf({ ...zimage, control: [{ image: render("ring"), type: "canny" }] });
    expect(boxed.equals(plain)).toBe(false);
    expect(boxed.equals(ringed)).toBe(false);
    const two = await server.call("generate_image", { ...zimage, control: [{ image: render("box"), type: "canny" }, { image: render("ring"), type: "canny" }] });
    expect(errorText(two)).toMatch(/control: Z-Image .*takes one map at a time \(got 2\)/);
    const partly = await server.call("generate_image", { ...zimage, control: [{ image: render("box"), type: "canny", end: 0.5 }] });
    expect(errorText(partly)).toMatch(/control\[0\]: Z-Image .*ControlNet steers the whole schedule; leave start and end out/);
  });
});
