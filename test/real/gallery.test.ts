import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { DeleteObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { mkdirSync } from "node:fs";
import path from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { findChromium } from "../helpers/browser.js";
import { startHttpServer, type RunningHttpServer } from "../helpers/httpServer.js";
import { s3ClientFor, startMinio, type MinioServer } from "../helpers/minio.js";
import { PROJECT_ROOT } from "../helpers/paths.js";
import { makeTestHome, s3Env } from "../helpers/server.js";
import { toolCalls, type ToolCalls } from "../helpers/toolCalls.js";
import { waitUntil } from "../helpers/waitUntil.js";

const TOKEN = "gallery-token-0123456789abcdef";
const BUCKET = "kitty-gallery";
const SCREENSHOTS = path.join(PROJECT_ROOT, ".cache", "test-output");
const small = { model: "tiny_sd15", width: 256, height: 256, steps: 2 };
const chromiumPath = findChromium();

/** Polls job_status until the job ends. */
async function waitForEnd(mcp: ToolCalls, jobId: string): Promise<Record<string, any>> {
  return waitUntil(`job ${jobId} ends`, async () => {
    const status = await mcp.ok("job_status", { jobId, wait_seconds: 10 });
    return ["done", "failed", "cancelled"].includes(status.status) && status;
  }, { timeoutMs: 120_000, intervalMs: 0 });
}

/** Prometheus text → { "name{labels}": value } for the samples we read. */
async function scrape(url: string): Promise<Map<string, number>> {
  const response = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toContain("text/plain");
  const samples = new Map<string, number>();
  for (const line of (await response.text()).split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][\w:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    if (!match) throw new Error(`not a Prometheus sample line: ${line}`);
    samples.set(match[1]!, Number(match[2]));
  }
  return samples;
}

describe.skipIf(!chromiumPath)("the gallery in a real browser, /metrics and /healthz, on MinIO with the real runner", () => {
  let minio: MinioServer;
  let s3: S3Client;
  let server: RunningHttpServer;
  let client: Client;
  let mcp: ToolCalls;
  let browser: Browser;
  let page: Page;
  const made: string[] = [];

  beforeAll(async () => {
    mkdirSync(SCREENSHOTS, { recursive: true });
    minio = await startMinio();
    s3 = s3ClientFor(minio);
    server = await startHttpServer(await makeTestHome(inject("tinyModelsDir")), { ...s3Env(minio, BUCKET), KITTY_IMAGES_TOKEN: TOKEN });
    client = new Client({ name: "kitty-images-gallery-tests", version: "0.0.0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${TOKEN}` } } }));
    mcp = toolCalls(client);
    for (let seed = 1; seed <= 5; seed++) {
      const queued = await mcp.ok("generate_image", { ...small, prompt: `gallery image ${seed}`, seed });
      made.push((await waitForEnd(mcp, queued.jobId)).images[0].key);
    }
    browser = await chromium.launch({ executablePath: chromiumPath!, args: ["--no-sandbox"] });
    const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.url });
    page = await context.newPage();
  });

  afterAll(async () => {
    await browser?.close();
    await client?.close();
    await server?.stop();
    s3?.destroy();
    await minio?.stop();
  });

  it("sends a browser without the cookie to log in, and the token once given becomes a cookie, never kept in the address", async () => {
    const refused = await fetch(`${server.url}/gallery`, { redirect: "manual" });
    expect(refused.status).toBe(303);
    expect(refused.headers.get("location")).toBe("/gallery/login?next=%2Fgallery");

    await page.goto(`${server.url}/gallery?per_page=3`);
    expect(new URL(page.url()).pathname).toBe("/gallery/login");
    await page.fill("input[name=token]", "not-the-token");
    await page.click("button[type=submit]");
    await expect(page.locator("p.error").textContent()).resolves.toContain("not this server's KITTY_IMAGES_TOKEN");
    await page.fill("input[name=token]", TOKEN);
    await page.click("button[type=submit]");
    expect(new URL(page.url()).pathname + new URL(page.url()).search).toBe("/gallery?per_page=3");
    const cookie = (await page.context().cookies()).find((candidate) => candidate.name === "kitty_images_session")!;
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: "Strict" });
    expect(cookie.value).not.toContain(TOKEN);

    // ?token= on a link logs in too, and the redirect drops it from the address.
    const viaLink = await fetch(`${server.url}/gallery?token=${TOKEN}&per_page=2`, { redirect: "manual" });
    expect(viaLink.status).toBe(303);
    expect(viaLink.headers.get("location")).toBe("/gallery?per_page=2");
    expect(viaLink.headers.get("set-cookie")).toContain(`kitty_images_session=${cookie.value}`);
  });

  it("shows the newest images first with their previews, and pages past the first page with the cursor", async () => {
    await page.goto(`${server.url}/gallery?per_page=3`);
    const firstPage = await page.locator("article.card button.select").evaluateAll((buttons) => buttons.map((button) => (button as HTMLElement).dataset.key));
    expect(firstPage).toEqual([made[4], made[3], made[2]]);
    const loaded = await page.locator("article.card img").evaluateAll((images) =>
      Promise.all(images.map((image) => (image as HTMLImageElement).decode().then(() => (image as HTMLImageElement).naturalWidth))),
    );
    expect(loaded).toEqual([256, 256, 256]);
    await expect(page.locator("article.card .facts").first().textContent()).resolves.toContain("tiny_sd15 · 256×256 · seed 5");
    await expect(page.locator(".pager .count").textContent()).resolves.toBe("5 images");

    await page.click("a[rel=next]");
    const secondPage = await page.locator("article.card button.select").evaluateAll((buttons) => buttons.map((button) => (button as HTMLElement).dataset.key));
    expect(secondPage).toEqual([made[1], made[0]]);
    await expect(page.locator("a[rel=next]").count()).resolves.toBe(0);
  });

  it("Select shows and copies exactly the imageRef select_image returns", async () => {
    await page.goto(`${server.url}/gallery`);
    await page.locator(`button.select[data-key="${made[2]}"]`).click();
    await page.locator("#select-dialog[open]").waitFor();
    await page.locator("#copied", { hasText: "Copied" }).waitFor();
    const shown = JSON.parse((await page.locator("#imageref").textContent())!);
    const copied = JSON.parse(await page.evaluate(() => navigator.clipboard.readText()));
    expect(copied).toEqual(shown);
    const fromTool = (await mcp.ok("select_image", { key: made[2] })).imageRef;
    expect(Object.keys(shown).sort()).toEqual(["downloadUrl", "storageUri"]);
    expect(shown.storageUri).toBe(fromTool.storageUri);
    expect(shown.storageUri).toBe(`s3://${BUCKET}/${made[2]}`);
    // Presigned URLs carry their signing time, so two calls a second apart differ only in the query.
    expect(shown.downloadUrl.split("?")[0]).toBe(fromTool.downloadUrl.split("?")[0]);
    const [viaPage, viaTool] = await Promise.all([shown.downloadUrl, fromTool.downloadUrl].map(async (url: string) => Buffer.from(await (await fetch(url)).arrayBuffer())));
    expect(viaPage!.length).toBeGreaterThan(1000);
    expect(viaPage!.equals(viaTool!)).toBe(true);
    await page.screenshot({ path: path.join(SCREENSHOTS, "gallery-select.png"), fullPage: true });
  });

  it("fits a phone: two previews a row, nothing wider than the screen", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      await page.goto(`${server.url}/gallery`);
      const boxes = await page.locator("article.card").evaluateAll((cards) => cards.slice(0, 3).map((card) => card.getBoundingClientRect().toJSON()));
      expect(boxes[0].top).toBe(boxes[1].top);
      expect(boxes[2].top).toBeGreaterThan(boxes[0].top);
      expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
      await page.screenshot({ path: path.join(SCREENSHOTS, "gallery-phone.png") });
    } finally {
      await page.setViewportSize({ width: 1100, height: 900 });
    }
  });

  it("shows a running job's progress live in the job strip", async () => {
    await page.goto(`${server.url}/gallery`);
    await expect(page.locator("#jobs .idle").textContent()).resolves.toContain("No jobs running or queued");
    const slow = await mcp.ok("generate_image", { ...small, steps: 150, prompt: "a slow one for the strip", seed: 77 });
    const running = page.locator(`#jobs li.job.running[data-job="${slow.jobId}"]`);
    await running.waitFor({ timeout: 60_000 });
    // The strip is redrawn from the stream: the step count climbs while the page stays put.
    const stepOf = async () => Number((await running.locator(".state").textContent())!.match(/step (\d+)\/150/)![1]);
    const first = await stepOf();
    await waitUntil("the strip's step count climbs", async () => (await stepOf()) > first, { timeoutMs: 60_000, intervalMs: 100 });
    expect(await running.locator("progress").getAttribute("max")).toBe("150");
    await page.screenshot({ path: path.join(SCREENSHOTS, "gallery-job-strip.png") });
    await mcp.ok("cancel_job", { jobId: slow.jobId });
    await page.locator("#jobs .idle").waitFor({ timeout: 30_000 });
  });

  it("shows every parameter on the detail page, and 'generate again' queues a job with this seed", async () => {
    await page.goto(`${server.url}/gallery/image/${made[1]}`);
    const table = (await page.locator("table.parameters").textContent())!;
    for (const expected of ["gallery image 2", "tiny_sd15", "256×256", "Seed2", "Steps2", "Scheduler"]) expect(table.replace(/\s+/g, "")).toContain(expected.replace(/\s+/g, ""));
    const image = await page.locator("figure img").evaluate((element) => (element as HTMLImageElement).decode().then(() => (element as HTMLImageElement).naturalWidth));
    expect(image).toBe(256);
    expect(await page.locator("form.regenerate input[name=seed]").inputValue()).toBe("2");
    await page.fill("form.regenerate textarea[name=prompt]", "gallery image 2, again");
    await page.screenshot({ path: path.join(SCREENSHOTS, "gallery-detail.png"), fullPage: true });
    await page.click("form.regenerate button[type=submit]");
    const jobId = new URL(page.url()).searchParams.get("queued")!;
    expect(jobId).toMatch(/^[0-9a-f-]{36}$/);
    const done = await waitForEnd(mcp, jobId);
    expect(done).toMatchObject({ status: "done", prompt: "gallery image 2, again", images: [{ seed: 2, width: 256, height: 256 }] });

    // A bad value comes back as the form with the tool's own message, and nothing is queued.
    const before = (await mcp.ok("list_latest_images", { limit: 1 })).images[0].key;
    await page.goto(`${server.url}/gallery/image/${made[1]}`);
    await page.locator("form.regenerate input[name=steps]").evaluate((input) => ((input as HTMLInputElement).value = "500"));
    await page.click("form.regenerate button[type=submit]");
    await expect(page.locator("form.regenerate p.error").textContent()).resolves.toContain("steps must be an integer between 1 and 150 (got 500)");
    expect((await mcp.ok("list_latest_images", { limit: 1 })).images[0].key).toBe(before);
  });

  it("runs the MCP App in a sandboxed frame: previews through select_image, and a pick hands its imageRef to the conversation", async () => {
    const { contents } = await client.readResource({ uri: "ui://kitty-images/gallery.html" });
    const appHtml = (contents[0] as { text: string }).text;
    const listing = await client.callTool({ name: "list_latest_images", arguments: { limit: 4 } });
    const host = await page.context().newPage();
    try {
      // A minimal host: the App's requests go to the real server through this test's MCP client.
      await host.exposeFunction("hostCallTool", (params: { name: string; arguments: Record<string, unknown> }) => client.callTool(params));
      await host.setContent(`<!doctype html><html><body style="margin:0"><iframe id="app" sandbox="allow-scripts" style="width:720px;height:560px;border:0"></iframe><script>
        const frame = document.getElementById("app");
        window.log = { methods: [], messages: [], context: null, sizes: 0 };
        const send = (message) => frame.contentWindow.postMessage({ jsonrpc: "2.0", ...message }, "*");
        window.addEventListener("message", async (event) => {
          if (event.source !== frame.contentWindow) return;
          const m = event.data;
          window.log.methods.push(m.method);
          if (m.method === "ui/initialize") send({ id: m.id, result: { protocolVersion: m.params.protocolVersion, hostInfo: { name: "test-host", version: "0" }, hostCapabilities: {}, hostContext: {} } });
          else if (m.method === "ui/notifications/initialized") send({ method: "ui/notifications/tool-result", params: window.toolResult });
          else if (m.method === "tools/call") send({ id: m.id, result: await window.hostCallTool(m.params) });
          else if (m.method === "ui/message") { window.log.messages.push(m.params); send({ id: m.id, result: {} }); }
          else if (m.method === "ui/update-model-context") { window.log.context = m.params; send({ id: m.id, result: {} }); }
          else if (m.method === "ui/notifications/size-changed") window.log.sizes++;
        });
      </script></body></html>`);
      await host.evaluate(({ result, html }) => {
        (window as any).toolResult = result;
        (document.getElementById("app") as HTMLIFrameElement).srcdoc = html;
      }, { result: listing, html: appHtml });
      const app = host.frameLocator("#app");
      await app.locator(".tile").nth(3).locator("img").waitFor({ timeout: 30_000 });
      const tiles = await app.locator(".tile").evaluateAll((elements) => elements.map((tile) => (tile as HTMLElement).dataset.key));
      expect(tiles).toEqual((listing.structuredContent as { images: Array<{ key: string }> }).images.map((image) => image.key));
      const widths = await app.locator(".tile img").evaluateAll((images) => images.map((image) => (image as HTMLImageElement).naturalWidth));
      expect(widths).toEqual([256, 256, 256, 256]);
      await expect(app.locator(".tile figcaption").first().textContent()).resolves.toBe((listing.structuredContent as { images: Array<{ prompt: string }> }).images[0]!.prompt);
      await host.screenshot({ path: path.join(SCREENSHOTS, "mcp-app.png") });

      await app.locator(".tile button.pick").nth(1).click();
      await host.waitForFunction(() => (window as any).log.messages.length === 1);
      const log = await host.evaluate(() => (window as any).log);
      const key = tiles[1]!;
      const message = log.messages[0];
      expect(message.role).toBe("user");
      const handed = JSON.parse(/imageRef: (\{.*\})$/.exec(message.content[0].text)![1]!);
      const fromTool = (await mcp.ok("select_image", { key })).imageRef;
      expect(handed.storageUri).toBe(fromTool.storageUri);
      expect(handed.downloadUrl.split("?")[0]).toBe(fromTool.downloadUrl.split("?")[0]);
      expect(log.context.structuredContent).toEqual({ key, imageRef: handed });
      expect(log.methods.slice(0, 2)).toEqual(["ui/initialize", "ui/notifications/initialized"]);
      expect(log.sizes).toBeGreaterThan(0);
      await expect(app.locator(".tile.picked").getAttribute("data-key")).resolves.toBe(key);
    } finally {
      await host.close();
    }
  });

  it("counts jobs by final state in /metrics as real jobs end done, failed and cancelled", async () => {
    const before = await scrape(server.url);
    const count = (samples: Map<string, number>, state: string) => samples.get(`kitty_images_jobs_finished_total{state="${state}"}`) ?? 0;

    const done = await mcp.ok("generate_image", { ...small, prompt: "metrics: done", seed: 11 });
    const doneKey = (await waitForEnd(mcp, done.jobId)).images[0].key;
    // A start image that vanished from storage fails its job (init_image_unavailable).
    await s3.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: doneKey }));
    const failed = await mcp.ok("generate_image", { ...small, prompt: "metrics: failed", init_image: doneKey });
    expect(await waitForEnd(mcp, failed.jobId)).toMatchObject({ status: "failed", error: { code: "init_image_unavailable" } });
    const slow = await mcp.ok("generate_image", { ...small, steps: 150, prompt: "metrics: cancelled" });
    const queuedBehind = await mcp.ok("generate_image", { ...small, prompt: "metrics: queued behind" });
    await waitUntil("the slow job runs", async () => (await mcp.ok("job_status", { jobId: slow.jobId })).progress?.step > 0, { timeoutMs: 60_000, intervalMs: 50 });
    const during = await scrape(server.url);
    expect(during.get("kitty_images_queue_depth")).toBe(1);
    expect(during.get("kitty_images_jobs_running")).toBe(1);
    expect(during.get("kitty_images_running_job_progress_ratio")).toBeGreaterThan(0);
    expect(during.get("kitty_images_runner_up")).toBe(1);
    await mcp.ok("cancel_job", { jobId: slow.jobId });
    await waitForEnd(mcp, queuedBehind.jobId);

    const after = await scrape(server.url);
    expect(count(after, "done") - count(before, "done")).toBe(2);
    expect(count(after, "failed") - count(before, "failed")).toBe(1);
    expect(count(after, "cancelled") - count(before, "cancelled")).toBe(1);
    expect(after.get("kitty_images_queue_depth")).toBe(0);
    expect(after.get("kitty_images_images_indexed")).toBe((before.get("kitty_images_images_indexed") ?? 0) + 2);
    expect(after.get(`kitty_images_generation_seconds_count{model="tiny_sd15"}`)).toBeGreaterThanOrEqual(2);
    expect(after.get("kitty_images_runner_restarts_total")).toBe(0);
    expect(after.has("kitty_images_storage_retries_total")).toBe(true);

    const unauthorized = await fetch(`${server.url}/metrics`);
    expect(unauthorized.status).toBe(401);
  });

  it("answers /healthz without the token: runner, storage and queue, 503 once storage is gone", async () => {
    const healthy = await fetch(`${server.url}/healthz`);
    expect(healthy.status).toBe(200);
    expect(await healthy.json()).toMatchObject({
      status: "ok",
      server: { runsJobs: true },
      runner: { state: "ready", restarts: 0, device: "cpu" },
      storage: { kind: "s3", reachable: true },
      queue: { depth: 0, running: 0 },
    });
    await minio.stop();
    // The storage answer is kept for a few seconds: a supervisor polling every second must not hammer S3.
    const degraded = await waitUntil("/healthz sees storage gone", async () => {
      const response = await fetch(`${server.url}/healthz`);
      return response.status === 503 && ((await response.json()) as Record<string, any>);
    }, { timeoutMs: 20_000, intervalMs: 500 });
    expect(degraded).toMatchObject({ status: "degraded", storage: { reachable: false } });
  });
});

describe.runIf(!chromiumPath)("the gallery in a real browser", () => {
  it.skip("needs Chromium: install Debian's chromium (npm test does it where it may use apt-get) or set KITTY_IMAGES_CHROMIUM", () => {});
});
