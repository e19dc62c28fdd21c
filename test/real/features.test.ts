import { GetObjectCommand } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { describe, expect, it } from "vitest";
import { RUNNER_PYTHON } from "../helpers/paths.js";
import { downloadImage, generateDone, serverOnMinio } from "../helpers/jobs.js";
import { waitForJob, waitUntilRunning } from "../helpers/server.js";
import { errorText } from "../helpers/toolCalls.js";

describe("batches, image-to-image, LoRAs and the polish pass, over MCP with the real runner and MinIO", () => {
  const bucket = "kitty-features";
  const servers = serverOnMinio(bucket);

  const generate = (args: Record<string, unknown>) => generateDone(servers.server, args);
  const download = (key: string) => downloadImage(servers.server, key);

  const small = { model: "tiny_sd15", width: 256, height: 256, steps: 4 };

  it("makes count images in one job, seeds seed, seed+1, ..., each its own key, listed and selectable", async () => {
    const { queued, status } = await generate({ ...small, prompt: "a batch of three", seed: 500, count: 3 });
    expect(queued.count).toBe(3);
    expect(status.images.map((image: { seed: number }) => image.seed)).toEqual([500, 501, 502]);
    const keys: string[] = status.images.map((image: { key: string }) => image.key);
    expect(new Set(keys).size).toBe(3);
    expect(keys[1]).toBe(keys[0]!.replace(/\.png$/, "_2.png"));

    const listing = await servers.server.ok("list_latest_images", { limit: 3 });
    expect(listing.images.map((image: { key: string }) => image.key)).toEqual([...keys].reverse());
    const pngs = await Promise.all(keys.map(async (key) => (await download(key)).png));
    expect(new Set(pngs.map((png) => png.pixels.toString("base64"))).size).toBe(3);
    const { selected } = await download(keys[2]!);
    expect(selected.metadata).toMatchObject({ seed: 502, batch: { index: 2, count: 3 } });

    // The third image is what seed 502 makes on its own: a batch is reproducible image by image.
    const alone = await generate({ ...small, prompt: "a batch of three", seed: 502 });
    expect((await download(alone.status.images[0].key)).png.pixels.equals(pngs[2]!.pixels)).toBe(true);
  });

  it("starts from an image named by key, by storageUri or by downloadUrl, and records the parent", async () => {
    const parent = await generate({ ...small, prompt: "the parent", seed: 1 });
    const parentKey: string = parent.status.images[0].key;
    const ref = (await servers.server.ok("select_image", { key: parentKey })).imageRef;
    const children = [];
    for (const init_image of [parentKey, ref.storageUri, ref.downloadUrl]) {
      children.push(await generate({ ...small, prompt: "the child", seed: 2, init_image, strength: 0.5 }));
    }
    const pngs = [];
    for (const child of children) {
      const { png, selected } = await download(child.status.images[0].key);
      expect(selected.metadata.request.initImage).toEqual({ key: parentKey, strength: 0.5 });
      expect(selected.metadata.stepsRun).toBe(2);
      pngs.push(png);
    }
    expect(pngs[1]!.pixels.equals(pngs[0]!.pixels) && pngs[2]!.pixels.equals(pngs[0]!.pixels)).toBe(true);
    const textOnly = await generate({ ...small, prompt: "the child", seed: 2 });
    expect((await download(textOnly.status.images[0].key)).png.pixels.equals(pngs[0]!.pixels)).toBe(false);

    // Without a size the child takes the parent's; a size of another aspect ratio is cropped to, not refused.
    const wide = await generate({ ...small, width: 384, height: 256, prompt: "wider child", init_image: parentKey, strength: 0.5 });
    expect(wide.status.images[0]).toMatchObject({ width: 384, height: 256 });
    const { width: _w, height: _h, ...noSize } = small;
    const same = await generate({ ...noSize, prompt: "same size", init_image: parentKey });
    expect(same.status.images[0]).toMatchObject({ width: 256, height: 256 });
  });

  it("upscale_image makes a stored image twice as large with the real runner, its parent recorded; a longer one reports steps and stops on cancel", async () => {
    const source = await generate({ ...small, prompt: "a gear on a bench", seed: 3 });
    const sourceKey: string = source.status.images[0].key;
    const queued = await servers.server.ok("upscale_image", { image: sourceKey });
    expect(queued).toMatchObject({ width: 512, height: 512 });
    const done = await waitForJob(servers.server, queued.jobId);
    expect(done).toMatchObject({ status: "done", images: [{ width: 512, height: 512, seed: 3 }] });
    const { png, selected } = await download(done.images[0].key);
    expect([png.width, png.height]).toEqual([512, 512]);
    expect(selected.metadata).toMatchObject({ parents: [sourceKey], request: { prompt: "a gear on a bench", upscale: { scale: 2, mode: "hires" }, initImage: { key: sourceKey, strength: 0.3 } } });

    // Every step repainted at four times the size: long enough to be seen running and cancelled.
    const long = await generate({ ...small, prompt: "a longer one", steps: 60 });
    const big = await servers.server.ok("upscale_image", { image: long.status.images[0].key, scale: 4, strength: 1 });
    await waitUntilRunning(servers.server, big.jobId);
    const running = await servers.server.ok("job_status", { jobId: big.jobId });
    expect(running.progress.totalSteps).toBe(60);
    expect((await servers.server.ok("cancel_job", { jobId: big.jobId })).status).toBe("cancelled");
  });

  it("upscale_image mode esrgan runs an upscaler from the folder: 4x by safetensors, 2x by an original-layout .pth, the folder's first when unnamed", async () => {
    const source = await generate({ ...small, prompt: "a gear on a bench", seed: 6 });
    const sourceKey: string = source.status.images[0].key;
    const { models: _models, ...listing } = await servers.server.ok("list_models");
    expect([...listing.upscalers].sort((a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name))).toEqual([{ name: "tiny_x4", scale: 4 }, { name: "tiny-2x", scale: 2 }]);

    const queued = await servers.server.ok("upscale_image", { image: sourceKey, mode: "esrgan", model: "tiny_x4", scale: 4 });
    expect(queued).toMatchObject({ width: 1024, height: 1024 });
    const done = await waitForJob(servers.server, queued.jobId);
    expect(done).toMatchObject({ status: "done", model: "tiny_x4", images: [{ width: 1024, height: 1024, seed: 6 }] });
    const { png, selected } = await download(done.images[0].key);
    expect([png.width, png.height]).toEqual([1024, 1024]);
    expect(selected.metadata).toMatchObject({ family: "esrgan", parents: [sourceKey], stepsRun: 1, request: { upscale: { scale: 4, mode: "esrgan" }, prompt: "a gear on a bench" } });
    expect(png.text.parameters).toContain("Postprocess upscaler: tiny_x4");
    const pth = await waitForJob(servers.server, (await servers.server.ok("upscale_image", { image: sourceKey, mode: "esrgan", model: "tiny-2x", scale: 2 })).jobId);
    expect(pth).toMatchObject({ status: "done", model: "tiny-2x", images: [{ width: 512, height: 512 }] });
    // Unnamed: the folder's first.
    const unnamed = await waitForJob(servers.server, (await servers.server.ok("upscale_image", { image: sourceKey, mode: "esrgan" })).jobId);
    expect(unnamed).toMatchObject({ status: "done", model: listing.upscalers[0].name, images: [{ width: 512, height: 512 }] });

    const withPrompt = await servers.server.call("upscale_image", { image: sourceKey, mode: "esrgan", prompt: "sharper" });
    expect(errorText(withPrompt)).toContain("prompt applies to mode hires; mode esrgan runs the upscaler alone");
    const unknown = await servers.server.call("upscale_image", { image: sourceKey, mode: "esrgan", model: "4x-UltraSharp" });
    expect(errorText(unknown)).toMatch(/no upscaler '4x-UltraSharp' in .*upscalers \(there: /);
  });

  it("outpaints a stored image with the real runner: the canvas grows by exactly what was asked, the source is composited back, the parent recorded", async () => {
    const source = await generate({ ...small, prompt: "a lathe", seed: 5 });
    const sourceKey: string = source.status.images[0].key;
    const grown = await generate({ prompt: "a lathe in a workshop", model: "tiny_sd15", steps: 4, init_image: sourceKey, outpaint: { left: 64, top: 32 } });
    expect(grown.status.images[0]).toMatchObject({ width: 320, height: 288 });
    const { png, selected } = await download(grown.status.images[0].key);
    expect([png.width, png.height]).toEqual([320, 288]);
    expect(selected.metadata).toMatchObject({ parents: [sourceKey], options: { outpaintComposited: true }, request: { outpaint: { left: 64, right: 0, top: 32, bottom: 0 }, initImage: { strength: 1 } } });
    expect(png.text.parameters).toContain('Outpaint: "left 64, right 0, top 32, bottom 0"');
  });

  it("refuses an init_image this server does not have, and a strength that runs no step, saying what to give", async () => {
    const unknown = await servers.server.call("generate_image", { ...small, prompt: "x", init_image: "s3://elsewhere/images/nope.png" });
    expect(unknown.isError).toBe(true);
    expect(errorText(unknown)).toContain("init_image 's3://elsewhere/images/nope.png' is not an image of this server");
    const parent = (await servers.server.ok("list_latest_images", { limit: 1 })).images[0].key;
    const tooLittle = await servers.server.call("generate_image", { ...small, prompt: "x", init_image: parent, strength: 0.1 });
    expect(errorText(tooLittle)).toContain("strength 0.1 of 4 steps runs no step: use strength ≥ 0.25 or more steps");
    const strayStrength = await servers.server.call("generate_image", { ...small, prompt: "x", strength: 0.5 });
    expect(errorText(strayStrength)).toContain("strength applies to image-to-image only");
  });

  it("applies LoRAs from the models.yaml folder, lists them with their family and refuses one for another family", async () => {
    const { loras } = await servers.server.ok("list_models");
    expect(loras).toEqual([
      { name: "tiny_sd15_detail", family: "sd15" },
      { name: "tiny_sdxl_detail", family: "sdxl" },
    ]);
    const plain = await generate({ ...small, prompt: "lora check", seed: 8 });
    const styled = await generate({ ...small, prompt: "lora check", seed: 8, loras: [{ name: "tiny_sd15_detail", weight: 1 }] });
    const after = await generate({ ...small, prompt: "lora check", seed: 8 });
    const [a, b, c] = await Promise.all([plain, styled, after].map(async (run) => (await download(run.status.images[0].key)).png));
    expect(b!.pixels.equals(a!.pixels)).toBe(false);
    expect(c!.pixels.equals(a!.pixels), "the next job without the LoRA is the plain model's").toBe(true);
    expect(b!.text.parameters).toContain('Lora weights: "tiny_sd15_detail: 1"');

    const wrong = await servers.server.call("generate_image", { ...small, prompt: "x", loras: [{ name: "tiny_sdxl_detail", weight: 1 }] });
    expect(errorText(wrong)).toContain("LoRA 'tiny_sdxl_detail' is for sdxl models; model 'tiny_sd15' is sd15");
    const missing = await servers.server.call("generate_image", { ...small, prompt: "x", loras: [{ name: "nope", weight: 1 }] });
    expect(errorText(missing)).toContain("no LoRA 'nope' in");
    const tooHeavy = await servers.server.call("generate_image", { ...small, prompt: "x", loras: [{ name: "tiny_sd15_detail", weight: 3 }] });
    expect(errorText(tooHeavy)).toContain("loras[].weight must be a number between -2 and 2 (got 3)");
  });

  it("runs the refiner's polish pass as its own mode, recorded in the sidecar", async () => {
    const { status } = await generate({ prompt: "polished", model: "tiny_sdxl", steps: 10, seed: 4, refiner_mode: "polish" });
    const { png, selected } = await download(status.images[0].key);
    expect(selected.metadata.request.refiner).toMatchObject({ mode: "polish", steps: 1, strength: 0.3 });
    expect(selected.metadata.stepsRun).toBe(11);
    expect(png.text.parameters).toContain("Refiner mode: polish");
    const sidecar = await servers.s3.send(new GetObjectCommand({ Bucket: bucket, Key: status.images[0].key.replace(/\.png$/, ".json") }));
    expect(JSON.parse(await sidecar.Body!.transformToString()).request.refiner.mode).toBe("polish");
  });

  it("loads a single-file checkpoint offline and makes the pixels its diffusers folder makes", async () => {
    const { models } = await servers.server.ok("list_models");
    expect(models.find((model: { name: string }) => model.name === "tiny_sd15_file")).toMatchObject({ family: "sd15", present: true });
    const args = { prompt: "one file", width: 256, height: 256, steps: 3, seed: 21 };
    const folder = await generate({ ...args, model: "tiny_sd15" });
    const file = await generate({ ...args, model: "tiny_sd15_file" });
    const [a, b] = await Promise.all([folder, file].map(async (run) => (await download(run.status.images[0].key)).png));
    expect(b!.pixels.equals(a!.pixels)).toBe(true);
    expect(b!.text.parameters).toContain("Model: tiny_sd15_file");
  });

  it("stores a WebP preview beside each PNG and returns it as image content only when asked, well under 150 kB", async () => {
    // Random weights make noise, a preview's worst case for size.
    const { status } = await generate({ ...small, width: 768, height: 512, prompt: "a wide preview", seed: 3 });
    const key: string = status.images[0].key;
    const stored = await servers.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key.replace(/\.png$/, ".preview.webp") }));
    expect(stored.ContentType).toBe("image/webp");
    const storedBytes = Buffer.from(await stored.Body!.transformToByteArray());

    for (const result of [
      await servers.server.call("select_image", { key, preview: true }),
      await servers.server.call("job_status", { jobId: status.jobId, preview: true }),
    ]) {
      expect(JSON.stringify(result).length).toBeLessThan(150_000);
      expect(result.structuredContent).toBeDefined();
      const images = result.content.filter((part: { type: string }) => part.type === "image");
      expect(images).toHaveLength(1);
      expect(images[0]).toMatchObject({ mimeType: "image/webp" });
      const bytes = Buffer.from((images[0] as { data: string }).data, "base64");
      expect(bytes.equals(storedBytes)).toBe(true);
      // Pillow decodes it: a real image, scaled to the size the sidecar records.
      const decoded = await execa(RUNNER_PYTHON, ["-c", "import sys, io; from PIL import Image; im = Image.open(io.BytesIO(sys.stdin.buffer.read())); im.load(); print(im.format, *im.size)"], { input: bytes });
      const [format, width, height] = decoded.stdout.trim().split(" ");
      expect(format).toBe("WEBP");
      expect(Math.max(Number(width), Number(height))).toBeLessThanOrEqual(512);
      expect(Number(width) / Number(height)).toBeCloseTo(768 / 512, 1);
      const { metadata } = await servers.server.ok("select_image", { key });
      expect(metadata.preview).toMatchObject({ width: Number(width), height: Number(height), bytes: bytes.length, mimeType: "image/webp" });
    }
    const plain = await servers.server.call("select_image", { key });
    expect(plain.content.some((part: { type: string }) => part.type === "image")).toBe(false);
  });
});
