import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { execa } from "execa";
import { chmodSync, readdirSync, readFileSync, statSync } from "node:fs";
import { createServer, request as httpRequest, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import path from "node:path";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { findChromium } from "../helpers/browser.js";
import { startHttpServer, type RunningHttpServer } from "../helpers/httpServer.js";
import { SERVER_ENTRY } from "../helpers/paths.js";
import { makeTestHome, serverEnv, type TestHome } from "../helpers/server.js";
import { errorText, toolCalls, type ToolCalls } from "../helpers/toolCalls.js";
import { waitUntil } from "../helpers/waitUntil.js";

/**
 * The HTTP door probed as an attacker on this machine would (loopback only): each case is one a probe found
 * open, against the built server with its real runner. Nothing refused may queue a job.
 */
const TOKEN = "probe-token-0123456789abcdef";
const small = { model: "tiny_sd15", width: 256, height: 256, steps: 2 };
const chromiumPath = findChromium();

interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** node:http: a test needs its own Host header and bodies fetch will not send. */
function raw(url: string, { method = "GET", headers = {}, body }: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const request = httpRequest(url, { method, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks).toString("utf8") }));
    });
    request.on("error", reject);
    request.end(body);
  });
}

const form = (fields: Record<string, string>) => ({ "content-type": "application/x-www-form-urlencoded", body: new URLSearchParams(fields).toString() });

describe("the HTTP door against an attacker on loopback", () => {
  let testHome: TestHome;
  let server: RunningHttpServer;
  let client: Client;
  let mcp: ToolCalls;
  let doneKey = "";

  /** Every job the server has, however it ended: what a refused request must leave unchanged. */
  const jobCount = async () => {
    const stats: any = await (await fetch(`${server.url}/api/images/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json();
    return stats.queued + stats.started + stats.finished + stats.failed;
  };

  /** The gallery's cookie as a browser gets it from the login form. */
  const logIn = async () => {
    const { "content-type": type, body } = form({ token: TOKEN, next: "/gallery" });
    const answer = await raw(`${server.url}/gallery/login`, { method: "POST", headers: { "content-type": type! }, body });
    expect(answer.status).toBe(303);
    const setCookie = String(answer.headers["set-cookie"]);
    expect(setCookie).toMatch(/; Path=\/gallery;/);
    return setCookie.split(";")[0]!;
  };

  beforeAll(async () => {
    testHome = await makeTestHome(inject("tinyModelsDir"));
    // As an older version left it: the server must close it.
    chmodSync(testHome.home, 0o755);
    server = await startHttpServer(testHome, { KITTY_IMAGES_TOKEN: TOKEN });
    client = new Client({ name: "kitty-images-probes", version: "0.0.0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${TOKEN}` } } }));
    mcp = toolCalls(client);
    const queued = await mcp.ok("generate_image", { ...small, prompt: "the one image the probes may see", seed: 5 });
    const done = await waitUntil("the first job ends", async () => {
      const status = await mcp.ok("job_status", { jobId: queued.jobId, wait_seconds: 20 });
      return ["done", "failed"].includes(status.status) && status;
    }, { timeoutMs: 120_000, intervalMs: 0 });
    expect(done.status).toBe("done");
    doneKey = done.images[0].key;
  });

  afterAll(async () => {
    await client?.close();
    await server?.stop();
  });

  it("does not take ?token= on a POST as a login: a wrong one, or the right one, queues nothing without the real credential", async () => {
    const before = await jobCount();
    const { "content-type": type, body } = form({ prompt: "x", width: "256", height: "256", steps: "2" });
    const wrong = await raw(`${server.url}/gallery/generate?token=WRONG`, { method: "POST", headers: { "content-type": type! }, body });
    expect(wrong.status).toBe(401);
    expect(JSON.parse(wrong.body)).toMatchObject({ error: "unauthorized" });
    // Even the right token in the address is no login on a POST; the form also lacks its form token.
    const right = await raw(`${server.url}/gallery/generate?token=${TOKEN}`, { method: "POST", headers: { "content-type": type! }, body });
    expect(right.status).toBe(401);
    expect(await jobCount()).toBe(before);
    // The login form's own POST and a GET with ?token= still log in.
    expect(await logIn()).toMatch(/^kitty_images_session=/);
    const viaLink = await raw(`${server.url}/gallery?token=${TOKEN}`);
    expect(viaLink.status).toBe(303);
    expect(viaLink.headers.location).toBe("/gallery");
  });

  it("takes the gallery's cookie for the gallery only, never for /api, /mcp or /metrics", async () => {
    const cookie = await logIn();
    expect((await raw(`${server.url}/gallery`, { headers: { cookie } })).status).toBe(200);
    const initialize = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "t", version: "0" } } });
    for (const [route, init] of [
      ["/api/images/latest", {}],
      ["/api/images/stats", {}],
      ["/metrics", {}],
      ["/mcp", { method: "POST", headers: { "content-type": "application/json", accept: "application/json, text/event-stream" }, body: initialize }],
    ] as const) {
      const answer = await raw(`${server.url}${route}`, { ...init, headers: { ...("headers" in init ? init.headers : {}), cookie } });
      expect(answer.status, route).toBe(401);
    }
  });

  it("queues from a gallery form only with the form token its page carries", async () => {
    const cookie = await logIn();
    const before = await jobCount();
    const fields = { prompt: "csrf check", model: "tiny_sd15", width: "256", height: "256", steps: "2" };
    const forged = await raw(`${server.url}/gallery/generate`, { method: "POST", headers: { cookie, "content-type": form(fields)["content-type"]! }, body: form(fields).body });
    expect(forged.status).toBe(403);
    expect(forged.body).toContain("did not come from this gallery");
    expect(await jobCount()).toBe(before);

    const detail = await raw(`${server.url}/gallery/image/${doneKey.split("/").map(encodeURIComponent).join("/")}`, { headers: { cookie } });
    const formToken = /name="form_token" value="([^"]+)"/.exec(detail.body)?.[1];
    expect(formToken).toBeTruthy();
    const sent = await raw(`${server.url}/gallery/generate`, { method: "POST", headers: { cookie, "content-type": form(fields)["content-type"]! }, body: form({ ...fields, form_token: formToken! }).body });
    expect(sent.status).toBe(303);
    expect(sent.headers.location).toMatch(/^\/gallery\?queued=/);
    expect(await jobCount()).toBe(before + 1);
  });

  it("refuses REST POSTs that are not JSON with 415 (a page elsewhere can send text/plain without asking)", async () => {
    const before = await jobCount();
    const body = JSON.stringify({ prompt: "sent as text/plain", ...small });
    for (const type of ["text/plain;charset=UTF-8", "application/x-www-form-urlencoded", undefined]) {
      const answer = await raw(`${server.url}/api/images/generate`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, ...(type && { "content-type": type }) }, body });
      expect(answer.status, String(type)).toBe(415);
      expect(JSON.parse(answer.body).detail).toContain("application/json");
    }
    expect(await jobCount()).toBe(before);
  });

  it("refuses an Origin on another port of this host, token and all", async () => {
    const before = await jobCount();
    const port = new URL(server.url).port;
    const otherPort = String(Number(port) === 65535 ? 1024 : Number(port) + 1);
    const body = JSON.stringify({ prompt: "cross-port", ...small });
    const crossPort = await raw(`${server.url}/api/images/generate`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, origin: `http://127.0.0.1:${otherPort}`, "content-type": "application/json" }, body });
    expect(crossPort.status).toBe(403);
    expect(JSON.parse(crossPort.body)).toMatchObject({ error: "forbidden_origin" });
    const samePage = await raw(`${server.url}/api/images/generate`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, origin: `http://127.0.0.1:${port}`, "content-type": "application/json" }, body });
    expect(samePage.status).toBe(200);
    expect(await jobCount()).toBe(before + 1);
  });

  it("refuses a prompt with a lone UTF-16 surrogate at the door, naming prompt, over MCP and REST", async () => {
    const before = await jobCount();
    const result = await mcp.call("generate_image", { ...small, prompt: "a \ud800" });
    expect(result.isError).toBe(true);
    expect(errorText(result)).toMatch(/prompt holds a lone UTF-16 surrogate/);
    const rest = await raw(`${server.url}/api/images/generate`, { method: "POST", headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" }, body: JSON.stringify({ prompt: "a \ud800" }) });
    expect(rest.status).toBe(422);
    expect(JSON.parse(rest.body).detail[0]).toMatchObject({ loc: ["body", "prompt"] });
    expect(await jobCount()).toBe(before);
  });

  it("caps progressToken at 256 characters: a longer one is refused, naming it; one at the cap is answered with progress", async () => {
    const long = await client.callTool({ name: "list_models", arguments: {}, _meta: { progressToken: "t".repeat(900_000) } });
    expect(long.isError).toBe(true);
    expect(errorText(long as any)).toMatch(/_meta\.progressToken is 900000 characters; at most 256/);
    const token = "p".repeat(256);
    const notes: unknown[] = [];
    client.setNotificationHandler("notifications/progress", (note) => {
      if (note.params.progressToken === token) notes.push(note.params);
    });
    // Long enough (seconds even on an idle machine) that the waits below see it running and report its steps.
    const queued = await mcp.ok("generate_image", { ...small, width: 512, height: 512, steps: 150, prompt: "progress with a long token" });
    await waitUntil("a progress notification carries the 256-character token", async () => {
      const status = await client.callTool({ name: "job_status", arguments: { jobId: queued.jobId, wait_seconds: 2 }, _meta: { progressToken: token } });
      expect(status.isError, JSON.stringify(status.content)).toBeFalsy();
      if (notes.length === 0 && (status.structuredContent as { status: string }).status === "done") throw new Error("the job ended before any wait saw a step");
      return notes.length > 0;
    }, { timeoutMs: 90_000, intervalMs: 0 });
    // It may have finished by now; either way it is not left running for the next test.
    await mcp.call("cancel_job", { jobId: queued.jobId });
  });

  it("answers /healthz to a Host that is not this server's with the status alone", async () => {
    const port = new URL(server.url).port;
    const own = JSON.parse((await raw(`${server.url}/healthz`, { headers: { host: `127.0.0.1:${port}` } })).body);
    expect(own).toMatchObject({ status: "ok", server: { pid: expect.any(Number) }, queue: expect.any(Object) });
    const rebound = await raw(`${server.url}/healthz`, { headers: { host: `attacker.example:${port}` } });
    expect(rebound.status).toBe(200);
    expect(JSON.parse(rebound.body)).toEqual({ status: "ok" });
  });

  it("answers the login form 413 over 64 KB, and a next with CR/LF by going to the gallery, never a 500", async () => {
    const big = await raw(`${server.url}/gallery/login`, { method: "POST", headers: { "content-type": "application/x-www-form-urlencoded" }, body: `token=${"x".repeat(70 * 1024)}` });
    expect(big.status).toBe(413);
    const { "content-type": type, body } = form({ token: TOKEN, next: "/gallery\r\nSet-Cookie: planted=1" });
    const split = await raw(`${server.url}/gallery/login`, { method: "POST", headers: { "content-type": type! }, body });
    expect(split.status).toBe(303);
    expect(split.headers.location).toBe("/gallery");
    expect(String(split.headers["set-cookie"])).not.toContain("planted");
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });

  it("marks JSON answers nosniff, refusals included", async () => {
    const ok = await raw(`${server.url}/api/images/stats`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const refused = await raw(`${server.url}/api/images/stats`);
    for (const answer of [ok, refused]) expect(answer.headers["x-content-type-options"]).toBe("nosniff");
  });

  it("keeps the data dir its owner's alone: folders 0700, the database and every image 0600", () => {
    const modes: Array<[string, number]> = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const file = path.join(dir, name);
        // The models.yaml the test wrote and the server's logs the test piped are not the server's files.
        if (name === "models.yaml" || name.endsWith(".log")) continue;
        const info = statSync(file);
        modes.push([file, info.mode & 0o777]);
        if (info.isDirectory() && name !== "runner-cache") walk(file);
      }
    };
    modes.push([testHome.home, statSync(testHome.home).mode & 0o777]);
    walk(testHome.home);
    const names = modes.map(([file]) => path.relative(testHome.home, file));
    expect(names).toEqual(expect.arrayContaining(["kitty-images.sqlite", "kitty-images.sqlite-wal", "link-signing.key"]));
    expect(names.some((name) => name.endsWith(".png"))).toBe(true);
    expect(names.some((name) => name.endsWith(".json"))).toBe(true);
    for (const [file, mode] of modes) expect(mode & 0o077, `${file} is ${mode.toString(8)}`).toBe(0);
  });
});

describe("the HTTP door's token setting", () => {
  it("trims the token before checking its length: sixteen characters of mostly spaces are one character", async () => {
    const testHome = await makeTestHome(inject("tinyModelsDir"));
    for (const args of [["serve", "--http", "--port", "18999"], ["serve", "--http", "--host", "0.0.0.0", "--port", "18999"]]) {
      const result = await execa(process.execPath, [SERVER_ENTRY, ...args], { env: serverEnv(testHome, { KITTY_IMAGES_TOKEN: "               x" }), extendEnv: false, reject: false, timeout: 30_000 });
      expect(result.exitCode, args.join(" ")).toBe(1);
      expect(result.stderr).toMatch(/KITTY_IMAGES_TOKEN.*at least 16 characters/);
    }
  });
});

describe.skipIf(!chromiumPath)("a logged-in browser and a page on another port of 127.0.0.1", () => {
  let server: RunningHttpServer;
  let attacker: Server;
  let browser: Browser;

  beforeAll(async () => {
    server = await startHttpServer(await makeTestHome(inject("tinyModelsDir")), { KITTY_IMAGES_TOKEN: TOKEN });
    const target = server.url;
    // What a hostile page on another local port does: a no-cors text/plain POST to the API, and a form posted to the gallery.
    attacker = createServer((_request, response) => {
      response.writeHead(200, { "content-type": "text/html" });
      response.end(`<!doctype html><title>elsewhere</title>
<form id="f" method="post" action="${target}/gallery/generate" target="sink"><input name="prompt" value="forged by a form"><input name="model" value="tiny_sd15"><input name="width" value="256"><input name="height" value="256"><input name="steps" value="2"></form>
<iframe name="sink"></iframe>
<script>
fetch(${JSON.stringify(`${target}/api/images/generate`)}, { method: "POST", mode: "no-cors", credentials: "include", headers: { "content-type": "text/plain" }, body: JSON.stringify({ prompt: "forged by fetch", model: "tiny_sd15", width: 256, height: 256, steps: 2 }) })
  .finally(() => { document.getElementById("f").submit(); setTimeout(() => { document.title = "sent"; }, 1500); });
</script>`);
    });
    await new Promise<void>((resolve) => attacker.listen(0, "127.0.0.1", () => resolve()));
    browser = await chromium.launch({ executablePath: chromiumPath!, args: ["--no-sandbox"] });
  });

  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((resolve) => (attacker ? attacker.close(() => resolve()) : resolve()));
    await server?.stop();
  });

  it("queues nothing from that page, by fetch or by form, though the browser holds the gallery's cookie", async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${server.url}/gallery`);
    await page.fill("input[name=token]", TOKEN);
    await page.click("button[type=submit]");
    expect(new URL(page.url()).pathname).toBe("/gallery");
    const stats = async () => (await (await fetch(`${server.url}/api/images/stats`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as Record<string, number>;
    const before = await stats();

    const hostile = await context.newPage();
    await hostile.goto(`http://127.0.0.1:${(attacker.address() as AddressInfo).port}/`);
    await hostile.waitForFunction(() => document.title === "sent", undefined, { timeout: 20_000 });
    expect(await stats()).toEqual(before);
    // The server saw both and refused them on their Origin.
    await waitUntil("the server logs both refusals", async () => {
      const log = readFileSync(server.logPath, "utf8");
      return (log.match(/"error":"forbidden_origin"/g) ?? []).length >= 2;
    }, { timeoutMs: 10_000 });
    await context.close();
  });
});
