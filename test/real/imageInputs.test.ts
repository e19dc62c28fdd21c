import { GetObjectCommand } from "@aws-sdk/client-s3";
import { execa } from "execa";
import { mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { downloadImage, generateDone, serverOnMinio } from "../helpers/jobs.js";
import { RUNNER_PYTHON } from "../helpers/paths.js";
import { makePng } from "../helpers/png.js";
import { waitForJob } from "../helpers/server.js";
import { errorText } from "../helpers/toolCalls.js";

/**
 * Images brought from outside, over MCP stdio with the real runner and MinIO: a pasted data: URL (a JPEG that
 * stands on its EXIF orientation), a local file under KITTY_IMAGES_INPUT_DIRS, a URL from a listed host. Each is
 * decoded, stored as an upload and named as the result's parent; what is not allowed is refused naming the field.
 */
describe("images brought in: data: URLs, local files and listed hosts, stored as uploads", () => {
  const inputs = mkdtempSync(path.join(tmpdir(), "kitty-inputs-"));
  const photo = path.join(inputs, "photo.jpg");
  const square = path.join(inputs, "square.png");
  const noise = path.join(inputs, "noise.png");
  const mask = path.join(inputs, "mask.png");
  const blank = path.join(inputs, "blank-mask.png");
  let web: Server;
  let port = 0;

  beforeAll(async () => {
    // A 200x120 JPEG whose EXIF says "rotate 90°": upright it is 120x200. And a 256x256 PNG.
    await execa(RUNNER_PYTHON, [
      "-c",
      `from PIL import Image
im = Image.new("RGB", (200, 120), (200, 40, 40)); im.paste((40, 40, 200), (0, 0, 100, 120))
exif = Image.Exif(); exif[0x0112] = 6
im.save(${JSON.stringify(photo)}, format="JPEG", exif=exif.tobytes())
Image.radial_gradient("L").convert("RGB").resize((256, 256)).save(${JSON.stringify(square)})
import numpy as np
Image.fromarray(np.random.default_rng(1).integers(0, 256, (256, 256, 3), dtype=np.uint8)).save(${JSON.stringify(noise)})
m = Image.new("L", (512, 512), 0); m.paste(255, (128, 128, 384, 384)); m.save(${JSON.stringify(mask)})
Image.new("L", (64, 64), 0).save(${JSON.stringify(blank)})`,
    ]);
    symlinkSync("/etc/hostname", path.join(inputs, "outside-link.png"));
    web = createServer((request, response) => {
      if (request.url === "/square.png") return response.writeHead(200, { "content-type": "image/png" }).end(makePng(256, 256));
      response.writeHead(404).end();
    });
    await new Promise<void>((resolve) => web.listen(0, "127.0.0.1", resolve));
    port = (web.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => (web ? web.close(() => resolve()) : resolve())));

  const bucket = "kitty-inputs";
  const servers = serverOnMinio(bucket, () => ({ KITTY_IMAGES_INPUT_DIRS: inputs, KITTY_IMAGES_FETCH_HOSTS: "127.0.0.1" }));
  const small = { model: "tiny_sd15", steps: 4, strength: 0.5 };
  const dataUrl = (file: string, type: string) => `data:${type};base64,${readFileSync(file).toString("base64")}`;
  const parentOf = async (key: string) => (await downloadImage(servers.server, key)).selected.metadata.parents as string[];
  const storedJson = async (key: string) => JSON.parse(await (await servers.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }))).Body!.transformToString());

  it("takes a pasted JPEG data: URL, decoded upright by its EXIF, as an upload the result names as its parent", async () => {
    const { status } = await generateDone(servers.server, { ...small, prompt: "a red and blue card", init_image: dataUrl(photo, "image/jpeg") });
    const [upload] = await parentOf(status.images[0].key);
    expect(upload).toMatch(/^uploads\/[0-9a-f]{32}\.png$/);
    // Its size follows the upright source (120x200, scaled up to the 256 px minimum side).
    expect(status.images[0]).toMatchObject({ width: 256, height: 424 });
    expect(await storedJson(upload!.replace(/\.png$/, ".json"))).toMatchObject({ kind: "upload", key: upload, format: "JPEG", width: 120, height: 200, origin: { from: "data" } });
    // Listed apart: the generations' listing does not show it.
    const listed = (await servers.server.ok("list_latest_images", { limit: 50 })).images.map((image: { key: string }) => image.key);
    expect(listed.some((key: string) => key.startsWith("uploads/"))).toBe(false);
    // The same bytes again are the same upload, and the upload's key itself is a start image from then on.
    const again = await generateDone(servers.server, { ...small, prompt: "again", init_image: dataUrl(photo, "image/jpeg") });
    expect(await parentOf(again.status.images[0].key)).toEqual([upload]);
    const byKey = await generateDone(servers.server, { ...small, prompt: "by key", init_image: upload });
    expect(await parentOf(byKey.status.images[0].key)).toEqual([upload]);
  });

  it("reads a local file under KITTY_IMAGES_INPUT_DIRS over stdio, and upscales an upload when told its prompt and model", async () => {
    const { status } = await generateDone(servers.server, { ...small, prompt: "a gradient", init_image: square });
    const [upload] = await parentOf(status.images[0].key);
    expect(await storedJson(upload!.replace(/\.png$/, ".json"))).toMatchObject({ format: "PNG", width: 256, height: 256, origin: { from: "file", path: square } });

    const unknownPrompt = await servers.server.call("upscale_image", { image: upload });
    expect(errorText(unknownPrompt)).toMatch(/prompt is needed: uploads\/\w+\.png was not made here/);
    const queued = await servers.server.ok("upscale_image", { image: upload, prompt: "a gradient, detailed", model: "tiny_sd15" });
    const done = await waitForJob(servers.server, queued.jobId);
    expect(done).toMatchObject({ status: "done", images: [{ width: 512, height: 512 }] });
    expect(await parentOf(done.images[0].key)).toEqual([upload]);
  });

  // A listed name that resolves to loopback is refused too: test/unit/fetchImage.test.ts (it needs a list of its own).
  it("fetches from a host listed by address; the same loopback by another name is not listed", async () => {
    const { status } = await generateDone(servers.server, { ...small, prompt: "fetched", init_image: `http://127.0.0.1:${port}/square.png` });
    const [upload] = await parentOf(status.images[0].key);
    expect(await storedJson(upload!.replace(/\.png$/, ".json"))).toMatchObject({ origin: { from: "url", url: `http://127.0.0.1:${port}/square.png` } });
    const inward = await servers.server.call("generate_image", { ...small, prompt: "x", init_image: `http://localhost:${port}/square.png` });
    expect(errorText(inward)).toMatch(/init_image: localhost:\d+ is not a host this server fetches from \(KITTY_IMAGES_FETCH_HOSTS lists 127\.0\.0\.1\)/);
    const offList = await servers.server.call("generate_image", { ...small, prompt: "x", init_image: "https://example.com/a.png" });
    expect(errorText(offList)).toMatch(/example\.com is not a host this server fetches from/);
  });

  it("inpaints under a mask of another size: pixels under black stay the input's exactly, the square is repainted; both are parents", async () => {
    const { status } = await generateDone(servers.server, { model: "tiny_sd15", steps: 4, prompt: "a brass gear", init_image: dataUrl(noise, "image/png"), mask: dataUrl(mask, "image/png"), mask_blur: 0 });
    expect(status.images[0]).toMatchObject({ width: 256, height: 256 });
    const { selected } = await downloadImage(servers.server, status.images[0].key);
    expect(selected.metadata).toMatchObject({ options: { inpaintComposited: true }, request: { mask: { blur: 0 }, initImage: { strength: 1 } } });
    expect(selected.metadata.parents).toHaveLength(2);
    expect(selected.metadata.parents.every((key: string) => key.startsWith("uploads/"))).toBe(true);
    const result = path.join(inputs, "inpainted.png");
    writeFileSync(result, Buffer.from(await (await fetch(selected.imageRef.downloadUrl)).arrayBuffer()));
    // The 512² mask's square (128..384) lands on 64..192 of the 256² image; its edge is a pixel soft once fitted.
    const { stdout } = await execa(RUNNER_PYTHON, [
      "-c",
      `import json, numpy as np
from PIL import Image
a = np.asarray(Image.open(${JSON.stringify(noise)}).convert("RGB")); b = np.asarray(Image.open(${JSON.stringify(result)}).convert("RGB"))
keep = np.ones((256, 256), bool); keep[62:194, 62:194] = False
print(json.dumps({"kept": bool((a[keep] == b[keep]).all()), "repainted": float((a[66:190, 66:190] != b[66:190, 66:190]).mean())}))`,
    ]);
    const compared = JSON.parse(stdout);
    expect(compared.kept, "every pixel under black is the input's").toBe(true);
    expect(compared.repainted, "the masked square is repainted").toBeGreaterThan(0.9);

    const nothing = await servers.server.call("generate_image", { model: "tiny_sd15", prompt: "x", init_image: dataUrl(noise, "image/png"), mask: dataUrl(blank, "image/png") });
    expect(errorText(nothing)).toMatch(/the mask covers nothing: no pixel is white/);
    const alone = await servers.server.call("generate_image", { model: "tiny_sd15", prompt: "x", mask: dataUrl(mask, "image/png") });
    expect(errorText(alone)).toMatch(/mask marks what to repaint in a start image: give init_image too/);
  });

  it("refuses a file outside the input folders (a link out of them too), a 30 MB payload and bytes that are no image, and goes on", async () => {
    const outside = await servers.server.call("generate_image", { ...small, prompt: "x", init_image: "/etc/hostname" });
    expect(errorText(outside)).toMatch(/init_image: \/etc\/hostname is outside the folders images are read from .*KITTY_IMAGES_INPUT_DIRS/);
    const link = await servers.server.call("generate_image", { ...small, prompt: "x", init_image: path.join(inputs, "outside-link.png") });
    expect(errorText(link)).toMatch(/is outside the folders images are read from/);

    const huge = `data:image/png;base64,${Buffer.alloc(30_000_000, 7).toString("base64")}`;
    const tooBig = await servers.server.call("generate_image", { ...small, prompt: "x", init_image: huge });
    expect(errorText(tooBig)).toMatch(/init_image is 30\.0 MB; an image brought in is at most 20 MB/);
    const notImage = await servers.server.call("generate_image", { ...small, prompt: "x", init_image: `data:image/png;base64,${Buffer.from("<svg>not a png</svg>").toString("base64")}` });
    expect(errorText(notImage)).toMatch(/init_image is not an image this server takes: not a PNG, JPEG or WebP image/);

    // The session and the queue go on.
    expect((await servers.server.ok("list_models")).models.length).toBeGreaterThan(0);
  });
});
