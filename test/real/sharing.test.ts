import { existsSync, readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { readPng } from "../helpers/png.js";
import { waitUntil } from "../helpers/waitUntil.js";
import { childPids, makeTestHome, startServer, waitForJob, waitUntilRunning, type RunningServer, type TestHome } from "../helpers/server.js";

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Claude Desktop and the KITTY agent each start their own stdio server on the same data dir. They share one
 * queue; only one of them runs a runner and generates, so the GPU still does one job at a time.
 */
describe("two servers on one data dir (local storage)", () => {
  let home: TestHome;
  let first: RunningServer;
  let second: RunningServer;

  beforeAll(async () => {
    home = await makeTestHome(inject("tinyModelsDir"));
    first = await startServer(home);
    // let the first take the worker lease before the second starts
    await waitUntil("the first server has started its runner", () => childPids(first.pid).length > 0, { timeoutMs: 10_000, intervalMs: 100 });
    second = await startServer(home);
  });

  afterAll(async () => {
    await first?.close();
    await second?.close();
  });

  it("share one queue: jobs queued through either run one at a time in the process that holds the lease", async () => {
    const ids = [
      (await second.ok("generate_image", { prompt: "via second", model: "tiny_sd15", width: 256, height: 256, steps: 3, seed: 1 })).jobId,
      (await first.ok("generate_image", { prompt: "via first", model: "tiny_sd15", width: 256, height: 256, steps: 3, seed: 2 })).jobId,
      (await second.ok("generate_image", { prompt: "via second again", model: "tiny_sd15", width: 256, height: 256, steps: 3, seed: 3 })).jobId,
    ];
    for (const jobId of ids) expect((await waitForJob(second, jobId)).status).toBe("done");
    expect(childPids(first.pid)).toHaveLength(1);
    expect(childPids(second.pid)).toHaveLength(0);

    const listing = await second.ok("list_latest_images", {});
    expect(listing.images.map((image: { prompt: string }) => image.prompt)).toEqual(["via second again", "via first", "via second"]);
    const selected = await second.ok("select_image", { index: 1 });
    expect(selected.imageRef.storageUri).toBe(selected.imageRef.downloadUrl);
    const file = fileURLToPath(selected.imageRef.downloadUrl);
    expect(existsSync(file.replace(/\.png$/, ".json"))).toBe(true);
    const png = readPng(readFileSync(file));
    expect([png.width, png.height]).toEqual([256, 256]);
  });

  it("show progress and take a cancel from the server that is not running the job", async () => {
    const { jobId } = await second.ok("generate_image", { prompt: "cancel across", model: "tiny_sd15", width: 512, height: 512, steps: 150, seed: 4 });
    await waitUntilRunning(second, jobId);
    expect((await second.ok("cancel_job", { jobId })).status).toBe("cancelled");
  });

  it("hand the queue to the survivor when the server running it is killed", async () => {
    const { jobId } = await second.ok("generate_image", { prompt: "interrupted holder", model: "tiny_sd15", width: 384, height: 384, steps: 30, seed: 5 });
    await waitUntilRunning(second, jobId);
    process.kill(first.pid, "SIGKILL");
    const status = await waitForJob(second, jobId, 180_000);
    expect(status.status).toBe("done");
    expect(childPids(second.pid)).toHaveLength(1);
  });
});
