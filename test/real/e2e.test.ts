import { GetObjectCommand, HeadObjectCommand } from "@aws-sdk/client-s3";
import { describe, expect, it } from "vitest";
import { downloadImage, generateDone, serverOnMinio } from "../helpers/jobs.js";
import { waitUntil } from "../helpers/waitUntil.js";
import { waitForJob, waitUntilRunning } from "../helpers/server.js";

describe("end to end: MCP client -> server -> SQLite queue -> Python runner -> MinIO -> imageRef", () => {
  const bucket = "kitty-e2e";
  const servers = serverOnMinio(bucket);

  const generate = (args: Record<string, unknown>) => generateDone(servers.server, args);
  const download = (key: string) => downloadImage(servers.server, key);

  it("queues a prompt, reports it done, lists it first and hands back an imageRef whose URL downloads the PNG", async () => {
    const { queued, status } = await generate({ prompt: "a red cube on a desk", model: "tiny_sd15", width: 320, height: 256, steps: 4, seed: 1234 });
    expect(queued.position).toBe(1);
    expect(status.images).toHaveLength(1);
    const key: string = status.images[0].key;
    expect(key).toMatch(/^images\/\d{8}_\d{6}_[0-9a-f]{8}\.png$/);
    expect(status.images[0]).toMatchObject({ width: 320, height: 256, seed: 1234 });

    const listing = await servers.server.ok("list_latest_images", { limit: 5 });
    expect(listing.images[0]).toMatchObject({ index: 1, key, prompt: "a red cube on a desk", model: "tiny_sd15", width: 320, height: 256, seed: 1234 });

    const byIndex = await servers.server.ok("select_image", { index: 1 });
    expect(Object.keys(byIndex.imageRef).sort()).toEqual(["downloadUrl", "storageUri"]);
    expect(byIndex.imageRef.storageUri).toBe(`s3://${bucket}/${key}`);
    expect(byIndex.imageRef.downloadUrl).toContain("X-Amz-Signature=");
    expect(byIndex.imageRef.downloadUrl).toContain("X-Amz-Expires=86400");

    const { png } = await download(key);
    expect([png.width, png.height]).toEqual([320, 256]);
    expect(JSON.parse(png.text["kitty-images"]!)).toMatchObject({ prompt: "a red cube on a desk", seed: 1234, family: "sd15" });
    // AUTOMATIC1111's PNG Info text, exactly in its layout, so any PNG-info viewer shows the settings.
    expect(png.text.parameters).toBe("a red cube on a desk\nSteps: 4, Sampler: Euler a, CFG scale: 7, Seed: 1234, Size: 320x256, Model: tiny_sd15");
  });

  it("uses a prompt past CLIP's 77 tokens whole and says how many tokens it had", async () => {
    // The tiny tokenizer spends a token per letter: the closing words sit well past the first chunk.
    const opening = "a red cube on a wooden desk, ".repeat(4);
    const snow = await generate({ prompt: `${opening}in the snow`, model: "tiny_sd15", width: 256, height: 256, steps: 3, seed: 11 });
    const rain = await generate({ prompt: `${opening}in the rain`, model: "tiny_sd15", width: 256, height: 256, steps: 3, seed: 11 });
    expect(snow.status.promptTokens).toBeGreaterThan(77);
    const [a, b] = await Promise.all([download(snow.status.images[0].key), download(rain.status.images[0].key)]);
    expect(a.png.pixels.equals(b.png.pixels), "the last words changed the image").toBe(false);
    expect(a.selected.metadata.promptTokens).toBe(snow.status.promptTokens);
  });

  it("stores the PNG and a JSON sidecar side by side in the bucket", async () => {
    const { status } = await generate({ prompt: "sidecar check", model: "tiny_sd15", width: 256, height: 256, steps: 3, seed: 5 });
    const key: string = status.images[0].key;
    const head = await servers.s3.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    expect(head.ContentType).toBe("image/png");
    const sidecarObject = await servers.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key.replace(/\.png$/, ".json") }));
    const sidecar = JSON.parse(await sidecarObject.Body!.transformToString());
    expect(sidecar).toMatchObject({ key, engine: "diffusers", model: "tiny_sd15", family: "sd15", seed: 5, device: "cpu", scheduler: "euler_a" });
    expect(sidecar).toMatchObject({ dtype: "float32", options: { attentionSlicing: false, channelsLast: false, compile: false, vaeUpcast: false } });
    expect(sidecar.request).toMatchObject({ prompt: "sidecar check", steps: 3, width: 256, height: 256 });
    expect(Object.keys(sidecar.versions)).toEqual(expect.arrayContaining(["torch", "diffusers", "transformers", "python"]));
    expect(sidecar.timings.inferenceSeconds).toBeGreaterThan(0);
  });

  it("gives identical pixels for the same seed and different pixels for another seed", async () => {
    const args = { prompt: "determinism", model: "tiny_sd15", width: 256, height: 256, steps: 4 };
    const first = await generate({ ...args, seed: 42 });
    const second = await generate({ ...args, seed: 42 });
    const other = await generate({ ...args, seed: 43 });
    const [a, b, c] = await Promise.all([first, second, other].map((run) => download(run.status.images[0].key)));
    expect(first.status.images[0].key).not.toBe(second.status.images[0].key);
    expect(a!.png.pixels.equals(b!.png.pixels)).toBe(true);
    expect(a!.png.pixels.equals(c!.png.pixels)).toBe(false);
  });

  it("runs SDXL with its refiner through the same path, at a non-square size", async () => {
    const { status } = await generate({ prompt: "sdxl refined", model: "tiny_sdxl", width: 256, height: 384, steps: 5, refiner: true, seed: 9 });
    const { png, selected } = await download(status.images[0].key);
    expect([png.width, png.height]).toEqual([256, 384]);
    expect(selected.metadata).toMatchObject({ family: "sdxl", model: "tiny_sdxl" });
    expect(selected.metadata.request.refiner).toMatchObject({ steps: 1, cfgScale: 5, switchAt: 0.8 });
    expect(selected.metadata.stepsRun).toBe(5);
    // Same seed without the refiner: the base alone makes a different image, so the refiner really ran.
    const plain = await generate({ prompt: "sdxl refined", model: "tiny_sdxl", width: 256, height: 384, steps: 5, refiner: false, seed: 9 });
    const { png: plainPng } = await download(plain.status.images[0].key);
    expect(plainPng.pixels.equals(png.pixels)).toBe(false);
  });

  it("reports progress as step k of n while a job runs", async () => {
    const queued = await servers.server.ok("generate_image", { prompt: "slow one", model: "tiny_sd15", width: 512, height: 512, steps: 40, seed: 3 });
    const sawProgress = await waitUntil("job_status reports a step, or the job ends", async () => {
      const status = await servers.server.ok("job_status", { jobId: queued.jobId });
      if (status.status === "running" && status.progress.step > 0) return status.progress as { step: number; totalSteps: number };
      return status.status === "done" ? { step: 0, totalSteps: 0 } : undefined;
    }, { timeoutMs: 20_000, intervalMs: 50 });
    expect(sawProgress.totalSteps).toBe(40);
    expect(sawProgress.step).toBeGreaterThan(0);
    await waitForJob(servers.server, queued.jobId);
  });

  it("cancels a queued job and stops a running one", async () => {
    const running = await servers.server.ok("generate_image", { prompt: "to stop", model: "tiny_sd15", width: 512, height: 512, steps: 150, seed: 1 });
    await waitUntilRunning(servers.server, running.jobId);
    const queued = await servers.server.ok("generate_image", { prompt: "to drop", model: "tiny_sd15", width: 256, height: 256, steps: 2, seed: 2 });
    expect(queued.position).toBe(1);
    expect((await servers.server.ok("cancel_job", { jobId: queued.jobId })).status).toBe("cancelled");
    expect((await servers.server.ok("job_status", { jobId: running.jobId })).status).toBe("running");
    expect((await servers.server.ok("cancel_job", { jobId: running.jobId })).status).toBe("cancelled");
    const after = await servers.server.ok("job_status", { jobId: running.jobId });
    expect(after).toMatchObject({ status: "cancelled" });
    expect(after.images).toBeUndefined();
    const again = await servers.server.call("cancel_job", { jobId: running.jobId });
    expect(again.isError).toBe(true);
    // The queue keeps going after a cancel.
    await generate({ prompt: "after cancel", model: "tiny_sd15", width: 256, height: 256, steps: 2 });
  });

  it("pages list_latest_images newest first with a cursor", async () => {
    const first = await servers.server.ok("list_latest_images", { limit: 2 });
    expect(first.images.map((image: { index: number }) => image.index)).toEqual([1, 2]);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = await servers.server.ok("list_latest_images", { limit: 2, cursor: first.nextCursor });
    expect(second.images[0].index).toBe(3);
    expect(second.images[0].createdAt <= first.images[1].createdAt).toBe(true);
    const keys = [...first.images, ...second.images].map((image: { key: string }) => image.key);
    expect(new Set(keys).size).toBe(keys.length);
  });
});
