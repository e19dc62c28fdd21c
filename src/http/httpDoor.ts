import { toNodeHandler } from "@modelcontextprotocol/node";
import { createMcpHandler } from "@modelcontextprotocol/server";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { pipeline } from "node:stream/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { hostname } from "node:os";
import { KittyError, messageOf } from "../core/errors.js";
import type { App } from "../mcp/app.js";
import { mcpServerFactory } from "../mcp/createMcpServer.js";
import { checkImageKey } from "../storage/imageKeys.js";
import { LocalImageStore } from "../storage/local.js";
import { LinkSigner } from "../storage/signedLinks.js";
import { accessPolicy, checkAccess, hostAllowed, isLoopbackAddress } from "./accessGuard.js";
import { decodePath, MAX_BODY_BYTES, sendJson } from "./body.js";
import { handleGalleryLogin, loginRedirect } from "./gallery/login.js";
import { handleGallery } from "./gallery/routes.js";
import { ServerMetrics } from "./metrics.js";
import { HealthCheck } from "./health.js";
import { handleRest } from "./restApi.js";
import { dropWhenStalled, STALL_MS } from "./stallGuard.js";

export interface HttpDoorOptions {
  host: string;
  port: number;
  /** How long a response may wait for its client to read before it is dropped (tests shorten it). */
  stallMs?: number;
}

export interface HttpDoor {
  /** How this process reaches the door (for logs and tests); other hosts use the public URL. */
  url: string;
  close(): Promise<void>;
}

/** The address other machines use: KITTY_IMAGES_PUBLIC_URL, else the bind address (this machine's name for 0.0.0.0). */
export function publicBaseUrl(app: Pick<App, "config">, { host, port }: HttpDoorOptions): string {
  if (app.config.http.publicUrl) return app.config.http.publicUrl;
  const name = host === "0.0.0.0" || host === "::" ? hostname() : host.includes(":") ? `[${host}]` : host;
  return `http://${name}:${port}`;
}

/** Refuses a setup that would serve every network with no token and no trusted networks. */
export function assertSafeBinding(app: Pick<App, "config">, host: string): void {
  const { token, trustedNetworks } = app.config.http;
  if (!isLoopbackAddress(host) && !token && trustedNetworks.length === 0) {
    throw new KittyError(
      "config_invalid",
      `refusing to serve ${host} without KITTY_IMAGES_TOKEN or KITTY_IMAGES_TRUSTED_NETWORKS: anyone on the network could queue jobs. ` +
        "Set a token (e.g. KITTY_IMAGES_TOKEN=$(openssl rand -hex 24)), trust your private network, or bind 127.0.0.1.",
    );
  }
}

/**
 * The HTTP door: MCP (Streamable HTTP, stateless, both protocol eras) at /mcp, the images-service REST API under
 * /api/images, the gallery under /gallery, signed file links under /files, /metrics (Prometheus), /healthz. Every request but /healthz passes the access guard
 * first (a /files link needs the right Host and Origin but no token: its signature is the permission); nothing
 * is read, served or queued for a refused one.
 */
export async function startHttpDoor(app: App, options: HttpDoorOptions): Promise<HttpDoor> {
  assertSafeBinding(app, options.host);
  const policy = accessPolicy(app.config.http, options.host, hostname());
  const log = app.log.child({ component: "http" });
  const mcp = createMcpHandler(mcpServerFactory(app, "http"), {
    legacy: "stateless",
    maxRequestBodySize: MAX_BODY_BYTES,
    onerror: (error) => log.debug({ error: error.message }, "MCP request refused or failed"),
  });
  const mcpNode = toNodeHandler(mcp, { maxRequestBodySize: MAX_BODY_BYTES, onerror: (error) => log.warn({ error: error.message }, "MCP adapter failed") });
  const signer = app.store.kind === "local" ? LinkSigner.forHome(app.config.home) : null;
  const health = new HealthCheck(app);
  const metrics = new ServerMetrics({ queue: app.queue, index: app.index, engine: app.worker ? app.engine : null, workers: app.workers });
  app.worker?.observe(metrics);

  const route = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const url = new URL(request.url ?? "/", "http://door.invalid");
    // A client that stops reading (an MCP stream while job_status sends progress, the gallery's events, a file)
    // would otherwise have what is written for it queue here for as long as it stays connected.
    dropWhenStalled(response, options.stallMs ?? STALL_MS, () => log.warn({ path: url.pathname, remote: request.socket.remoteAddress }, "dropped a response whose client stopped reading"));
    const facts = { headers: request.headers, remoteAddress: request.socket.remoteAddress };
    // Open to a supervisor without the token: states and counts only, nothing from a request or a path. A Host
    // that is not this server's (a DNS-rebinding page reading it) gets the status word alone.
    if (url.pathname === "/healthz") {
      const report = await health.report();
      const body = hostAllowed(facts, policy) ? report : { status: report.status };
      return sendJson(response, report.status === "ok" ? 200 : 503, body, { "cache-control": "no-store" });
    }
    const isGallery = url.pathname === "/gallery" || url.pathname.startsWith("/gallery/");
    // How a browser gets past the token check: the login form (GET shows it, POST checks it) and a GET that trades
    // ?token= for the cookie. Both need only the right Host and Origin; any other request with ?token= is checked as usual.
    const loggingIn = url.pathname === "/gallery/login" || (isGallery && request.method === "GET" && url.searchParams.has("token"));
    const refusal = checkAccess(facts, policy, { tokenRequired: !url.pathname.startsWith("/files/") && !loggingIn, cookieAccepted: isGallery });
    if (refusal?.status === 401 && isGallery && request.method === "GET" && policy.token) return loginRedirect(response, url);
    if (refusal) {
      log.warn({ path: url.pathname, remote: request.socket.remoteAddress, error: refusal.error }, "request refused");
      return sendJson(response, refusal.status, { error: refusal.error, detail: refusal.message }, refusal.status === 401 ? { "www-authenticate": "Bearer" } : {});
    }
    if (loggingIn) return handleGalleryLogin(policy, request, response, url);
    if (url.pathname === "/mcp") return mcpNode(request, response);
    if (await handleGallery(app, policy, request, response, url)) return;
    if (url.pathname === "/metrics") {
      // Collected before the status is sent: a database that does not answer makes the scrape fail, not look empty.
      const body = await metrics.text();
      response.writeHead(200, { "content-type": metrics.contentType, "cache-control": "no-store" });
      return void response.end(body);
    }
    if (url.pathname.startsWith("/files/")) {
      if (request.method !== "GET" && request.method !== "HEAD") return sendJson(response, 405, { detail: "files are read with GET" }, { allow: "GET, HEAD" });
      return serveFile(app, signer, url, response);
    }
    if (await handleRest(app, request, response, url)) return;
    sendJson(response, 404, { detail: `no route for ${request.method} ${url.pathname}; MCP is at /mcp, the REST API under /api/images, the gallery at /gallery` });
  };

  const server = createServer((request, response) => {
    route(request, response).catch((error: unknown) => {
      // The path only: a /files query carries a signature that must not end up in logs.
      const where = request.url?.split("?")[0];
      const busy = app.databaseTrouble(error, `${request.method} ${where}`);
      log.error({ error: messageOf(error), path: where }, "HTTP request failed");
      if (response.headersSent) response.end();
      else if (busy) sendJson(response, 503, { error: busy.code, detail: busy.message }, { "retry-after": "5" });
      else sendJson(response, 500, { detail: "internal error; the server's log has the details" });
    });
  });
  await listen(server, options);
  const address = server.address() as AddressInfo;
  policy.port = address.port;
  const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
  return {
    url: `http://${shownHost === "0.0.0.0" || shownHost === "[::]" ? "127.0.0.1" : shownHost}:${address.port}`,
    async close() {
      await mcp.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

async function serveFile(app: App, signer: LinkSigner | null, url: URL, response: ServerResponse): Promise<void> {
  const key = decodePath(url.pathname.slice("/files/".length));
  if (key === null) return sendJson(response, 404, { detail: "not an image key" });
  if (!signer || !(app.store instanceof LocalImageStore)) return sendJson(response, 404, { detail: "images are in S3 here: their downloadUrl is a presigned S3 URL" });
  try {
    checkImageKey(key, app.config.keyPrefix);
  } catch (error) {
    return sendJson(response, 404, { detail: messageOf(error) });
  }
  const refusal = signer.check(key, url.searchParams.get("exp"), url.searchParams.get("sig"));
  if (refusal) return sendJson(response, 403, { error: "bad_link", detail: refusal });
  const file = app.store.fileFor(key);
  const size = await stat(file).then((info) => info.size, () => null);
  if (size === null) return sendJson(response, 404, { detail: `image ${key} is not stored here` });
  response.writeHead(200, { "content-type": "image/png", "content-length": String(size), "cache-control": "private, max-age=3600" });
  // A file removed or unreadable mid-send ends this response, never the server.
  await pipeline(createReadStream(file), response).catch(() => response.destroy());
}

/**
 * Whether the door could listen there, asked before anything else starts: a port already taken must fail the start
 * before the worker takes a queued job (which would go back to the queue, but only after starting its runner).
 */
export async function assertPortFree(options: HttpDoorOptions): Promise<void> {
  const probe = createServer();
  await listen(probe, options);
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

function listen(server: Server, { host, port }: HttpDoorOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      reject(error.code === "EADDRINUSE" ? new KittyError("config_invalid", `port ${port} on ${host} is taken; pick another with --port`) : error),
    );
    server.listen(port, host, () => resolve());
  });
}
