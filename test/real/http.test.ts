import { Client, StreamableHTTPClientTransport, type ClientOptions } from "@modelcontextprotocol/client";
import { execa } from "execa";
import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { MAX_MESSAGE_BYTES } from "../../src/core/limits.js";
import { startHttpServer, type RunningHttpServer } from "../helpers/httpServer.js";
import { freePort } from "../helpers/minio.js";
import { PROJECT_ROOT, RUNNER_PYTHON, SERVER_ENTRY } from "../helpers/paths.js";
import { readPng } from "../helpers/png.js";
import { makeTestHome, serverEnv, startServer, type RunningServer, type TestHome } from "../helpers/server.js";
import { toolCalls } from "../helpers/toolCalls.js";
import { waitUntil } from "../helpers/waitUntil.js";

const REST = JSON.parse(readFileSync(path.join(PROJECT_ROOT, "test/fixtures/images-service-rest.json"), "utf8"));
const TOKEN = "test-token-0123456789abcdef";
const MODERN: ClientOptions = { versionNegotiation: { mode: { pin: "2026-07-28" } } };
const keysOf = (value: object) => Object.keys(value).sort();

/** node:http rather than fetch, which will not send a Host header of the caller's choosing. */
function rawRequest(url: string, init: RequestInit): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method: init.method ?? "GET", headers: (init.headers ?? {}) as Record<string, string> }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    request.on("error", reject);
    request.end(init.body as string | undefined);
  });
}

async function mcpOverHttp(url: string, options: ClientOptions = {}, headers: Record<string, string> = {}) {
  const client = new Client({ name: "kitty-images-http-tests", version: "0.0.0" }, options);
  await client.connect(new StreamableHTTPClientTransport(new URL(`${url}/mcp`), { requestInit: { headers } }));
  return { client, ...toolCalls(client) };
}

/** Waits for a job through job_status, collecting the progress notifications the wait sends, in arrival order. */
async function waitWithProgress(client: Client, jobId: string) {
  const steps: Array<{ progress: number; total?: number; message?: string }> = [];
  // Our own handler: the SDK's per-call onprogress can miss notifications that arrive with the result.
  client.setNotificationHandler("notifications/progress", (notification) => {
    if (notification.params.progressToken === jobId) steps.push(notification.params);
  });
  const final = await waitUntil(`job ${jobId} ends`, async () => {
    const result = await client.callTool({ name: "job_status", arguments: { jobId, wait_seconds: 30 }, _meta: { progressToken: jobId } });
    const status = result.structuredContent as Record<string, any>;
    return ["done", "failed", "cancelled"].includes(status.status) && status;
  }, { timeoutMs: 120_000, intervalMs: 0 });
  return { final, steps };
}

function expectStepsInOrder(steps: Array<{ progress: number; total?: number; message?: string }>, total: number) {
  expect(steps.length, JSON.stringify(steps)).toBeGreaterThan(0);
  for (const [position, step] of steps.entries()) {
    expect(step.total).toBe(total);
    expect(step.message).toBe(`step ${step.progress}/${total}`);
    // Never backwards; a step may repeat when a job outlives one job_status wait and the next call reports it again.
    if (position > 0) expect(step.progress).toBeGreaterThanOrEqual(steps[position - 1]!.progress);
  }
}

describe("the HTTP door", () => {
  let home: TestHome;
  let open: RunningHttpServer;
  let guarded: RunningHttpServer;
  let guardedHome: TestHome;

  beforeAll(async () => {
    home = await makeTestHome(inject("tinyModelsDir"));
    guardedHome = await makeTestHome(inject("tinyModelsDir"));
    [open, guarded] = await Promise.all([startHttpServer(home), startHttpServer(guardedHome, { KITTY_IMAGES_TOKEN: TOKEN })]);
  });

  afterAll(async () => {
    await Promise.all([open?.stop(), guarded?.stop()]);
  });

  it.each([
    ["a 2025-era client", {}, "2025-11-25"],
    ["a 2026-07-28 client", MODERN, "2026-07-28"],
  ] as const)("MCP over HTTP, %s: generate, wait with progress in order, list, select, download", async (_name, options, version) => {
    const mcp = await mcpOverHttp(open.url, options);
    try {
      expect(mcp.client.getNegotiatedProtocolVersion()).toBe(version);
      const refused = await mcp.call("generate_image", { prompt: "x", model: "tiny_sd15", height: 4096 });
      expect(refused.isError).toBe(true);
      const queued = await mcp.ok("generate_image", { prompt: `over http ${version}`, model: "tiny_sd15", width: 256, height: 320, steps: 12, seed: 7 });
      const { final, steps } = await waitWithProgress(mcp.client, queued.jobId);
      expect(final).toMatchObject({ status: "done" });
      expectStepsInOrder(steps, 12);
      const newest = (await mcp.ok("list_latest_images", { limit: 1 })).images[0];
      expect(newest.key).toBe(final.images[0].key);
      const { imageRef } = await mcp.ok("select_image", { key: newest.key });
      expect(imageRef.storageUri).toMatch(/^file:\/\//);
      expect(imageRef.downloadUrl.startsWith(`${open.url}/files/${newest.key}?exp=`)).toBe(true);
      const response = await fetch(imageRef.downloadUrl);
      expect(response.status).toBe(200);
      const png = readPng(Buffer.from(await response.arrayBuffer()));
      expect([png.width, png.height]).toEqual([256, 320]);
      // Altered, the link is refused.
      const altered = imageRef.downloadUrl.replace(/sig=(.)/, (_match: string, first: string) => `sig=${first === "A" ? "B" : "A"}`);
      expect((await fetch(altered)).status).toBe(403);
    } finally {
      await mcp.client.close();
    }
  });

  it.each([
    ["default mode (2026-07-28)", "auto", "2026-07-28"],
    ["legacy mode (2025-11-25)", "legacy", "2025-11-25"],
  ])("MCP over HTTP, the Python mcp 2.x client in its %s: generate, status, latest, select, download", async (_name, mode, version) => {
    const { stdout } = await execa(RUNNER_PYTHON, [path.join(PROJECT_ROOT, "test/clients/python_mcp_client.py"), mode, `${open.url}/mcp`], { timeout: 180_000 });
    const seen = JSON.parse(stdout.trim().split("\n").at(-1)!);
    expect(seen.protocolVersion).toBe(version);
    expect(seen.refused).toMatchObject({ isError: true, text: expect.stringMatching(/width must be a multiple of 8 between 256 and 2048 \(got 1001\)/) });
    expect(seen.job).toMatchObject({ status: "done" });
    expect(seen.newest.key).toBe(seen.job.images[0].key);
    expect(seen.imageRef.downloadUrl.startsWith(`${open.url}/files/`)).toBe(true);
    expect(seen.downloadedPng).toBe(true);
  });

  it("refuses every request that lacks the token or comes from a foreign page, and queues nothing for any of them", async () => {
    const jobsNow = async () => {
      const stats: any = await (await fetch(`${guarded.url}/api/images/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
      return stats.queued + stats.started + stats.finished + stats.failed;
    };
    const before = await jobsNow();
    const initialize = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "t", version: "0" } } });
    const mcpHeaders = { "content-type": "application/json", accept: "application/json, text/event-stream" };
    const generate = JSON.stringify({ prompt: "must not be queued", model: "tiny_sd15", width: 256, height: 256, steps: 2 });
    const cases: Array<[string, string, RequestInit, number, string]> = [
      ["MCP without a token", "/mcp", { method: "POST", headers: mcpHeaders, body: initialize }, 401, "unauthorized"],
      ["MCP with a wrong bearer token", "/mcp", { method: "POST", headers: { ...mcpHeaders, authorization: "Bearer wrong-token-0123456789" }, body: initialize }, 401, "unauthorized"],
      ["MCP with a wrong X-API-Key", "/mcp", { method: "POST", headers: { ...mcpHeaders, "x-api-key": "nope" }, body: initialize }, 401, "unauthorized"],
      ["REST generate without a token", "/api/images/generate", { method: "POST", headers: { "content-type": "application/json" }, body: generate }, 401, "unauthorized"],
      ["REST generate from a foreign Origin, token and all", "/api/images/generate", { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, origin: "https://evil.example", "content-type": "application/json" }, body: generate }, 403, "forbidden_origin"],
      ["REST generate with a foreign Host (DNS rebinding)", "/api/images/generate", { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, host: "evil.example", "content-type": "application/json" }, body: generate }, 403, "forbidden_host"],
      ["MCP from a foreign Origin", "/mcp", { method: "POST", headers: { ...mcpHeaders, authorization: `Bearer ${TOKEN}`, origin: "http://evil.example" }, body: initialize }, 403, "forbidden_origin"],
      ["a listing without a token", "/api/images/latest", { method: "GET" }, 401, "unauthorized"],
    ];
    for (const [name, route, init, status, error] of cases) {
      const response = await rawRequest(`${guarded.url}${route}`, init);
      expect(response.status, name).toBe(status);
      expect(JSON.parse(response.body), name).toMatchObject({ error, detail: expect.any(String) });
    }
    // Over the body cap (declared): refused before anything is read or queued; the client need not send it all.
    const declared = { "content-length": String(MAX_MESSAGE_BYTES + 1) };
    expect((await rawRequest(`${guarded.url}/api/images/generate`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json", ...declared }, body: "{" })).status).toBe(413);
    expect((await rawRequest(`${guarded.url}/mcp`, { method: "POST", headers: { ...mcpHeaders, authorization: `Bearer ${TOKEN}`, ...declared }, body: "{" })).status).toBe(413);
    expect(await jobsNow()).toBe(before);
    // The right token, as either header, is served.
    const mcp = await mcpOverHttp(guarded.url, MODERN, { "x-api-key": TOKEN });
    expect((await mcp.ok("list_models")).models.length).toBe(4);
    await mcp.client.close();
  });

  it("REST: the deployed images-service's paths, fields and status words", async () => {
    const post = (route: string, body: unknown) => fetch(`${open.url}${route}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const get = async (route: string): Promise<any> => (await fetch(`${open.url}${route}`)).json();
    expect(keysOf(await get("/"))).toEqual(REST.root);
    const queued: any = await (await post("/api/images/generate", { prompt: "rest", model: "tiny_sd15", width: 256, height: 256, steps: 2, cfg: 6.5, refiner: null })).json();
    expect(keysOf(queued)).toEqual(REST.generate);
    const seenWords = new Set<string>();
    const job = await waitUntil("the REST job finishes", async () => {
      const status = await get(`/api/images/jobs/${queued.job_id}`);
      seenWords.add(status.status);
      return ["finished", "failed"].includes(status.status) && status;
    }, { intervalMs: 50 });
    expect(keysOf(job)).toEqual(REST.job);
    expect(job.status).toBe("finished");
    for (const word of seenWords) expect(REST.jobStatusWords).toContain(word);
    expect(keysOf(job.result)).toEqual(REST.finishedResult);
    expect(job.result.meta_key).toBe(job.result.png_key.replace(/\.png$/, ".json"));
    const latest = await get("/api/images/latest?limit=2");
    expect(keysOf(latest)).toEqual(REST.latest);
    expect(keysOf(latest.items[0])).toEqual(REST.latestItem);
    expect(latest.items[0]).toMatchObject({ key: job.result.png_key, size: expect.any(Number) });
    expect(latest.items[0].size).toBeGreaterThan(100);
    const selected: any = await (await post("/api/images/select", { key: job.result.png_key })).json();
    expect(keysOf(selected)).toEqual(REST.select);
    expect(keysOf(selected.imageRef)).toEqual(REST.imageRef);
    expect((await fetch(selected.imageRef.downloadUrl)).status).toBe(200);
    expect(keysOf(await get("/api/images/stats"))).toEqual(REST.stats);

    expect((await fetch(`${open.url}/api/images/jobs/no-such-job`)).status).toBe(404);
    expect((await post("/api/images/select", { key: "images/20260101_000000_deadbeef.png" })).status).toBe(404);
    const invalid = await post("/api/images/generate", { prompt: "x", width: 1001 });
    expect(invalid.status).toBe(422);
    expect(await invalid.json()).toEqual({ detail: [{ loc: ["body", "width"], msg: "width must be a multiple of 8 between 256 and 2048 (got 1001)", type: "not_multiple_of" }] });
  });

  it("REST: a cancelled job reads failed, with an error that says it was cancelled (kitty-cli stops only at finished or failed)", async () => {
    const queued: any = await (await fetch(`${open.url}/api/images/generate`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ prompt: "to cancel", model: "tiny_sd15", width: 512, height: 512, steps: 150 }) })).json();
    const mcp = await mcpOverHttp(open.url);
    try {
      await waitUntil("the job runs", async () => (await mcp.ok("job_status", { jobId: queued.job_id })).status === "running", { intervalMs: 50 });
      expect((await mcp.ok("cancel_job", { jobId: queued.job_id })).status).toBe("cancelled");
    } finally {
      await mcp.client.close();
    }
    const status = await (await fetch(`${open.url}/api/images/jobs/${queued.job_id}`)).json();
    expect(status).toEqual({ status: "failed", result: null, error: expect.stringContaining("cancelled") });
  });
});

describe("binding beyond loopback", () => {
  it("is refused with neither a token nor trusted networks, and says what to set", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const result = await execa(process.execPath, [SERVER_ENTRY, "serve", "--http", "--host", "0.0.0.0", "--port", String(await freePort())], {
      env: serverEnv(home),
      extendEnv: false,
      reject: false,
      timeout: 30_000,
    });
    expect(result.exitCode).toBe(1);
    expect(result.stderr).toMatch(/refusing to serve 0.0.0.0 without KITTY_IMAGES_TOKEN or KITTY_IMAGES_TRUSTED_NETWORKS/);
  });

  it("warns at start-up when presigned URLs would point at loopback", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const port = await freePort();
    const child = execa(process.execPath, [SERVER_ENTRY, "serve", "--http", "--host", "0.0.0.0", "--port", String(port)], {
      env: serverEnv(home, { KITTY_IMAGES_TOKEN: TOKEN, S3_ENDPOINT_URL: `http://127.0.0.1:${await freePort()}`, S3_ACCESS_KEY: "k", S3_SECRET_KEY: "s" }),
      extendEnv: false,
      reject: false,
      stdout: "ignore",
      stderr: "pipe",
    });
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      await waitUntil("the server warns about loopback download URLs", () => /S3_PUBLIC_ENDPOINT_URL/.test(stderr), { timeoutMs: 30_000, intervalMs: 100 });
      expect(stderr).toMatch(/presigned download URLs point at loopback/);
    } finally {
      child.kill("SIGTERM");
      await child;
    }
  });
});

describe("progress over stdio", () => {
  let server: RunningServer;

  afterAll(async () => {
    await server?.close();
  });

  it("job_status with a progressToken sends step k/n notifications in order while it waits", async () => {
    server = await startServer(await makeTestHome(inject("tinyModelsDir")));
    const queued = await server.ok("generate_image", { prompt: "progress on stdio", model: "tiny_sd15", width: 256, height: 256, steps: 12 });
    const { final, steps } = await waitWithProgress(server.client, queued.jobId);
    expect(final.status).toBe("done");
    expectStepsInOrder(steps, 12);
  });
});

