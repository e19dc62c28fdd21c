import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { boundedStdioTransport } from "../mcp/stdioTransport.js";
import { messageOf } from "../core/errors.js";
import { isLoopbackAddress } from "../http/accessGuard.js";
import type { HttpDoorOptions } from "../http/httpDoor.js";
import { inspectEntry } from "../models/modelFolder.js";
import { createApp, queueIsShared } from "../app/createApp.js";
import type { App } from "../mcp/app.js";
import { mcpServerFactory } from "../mcp/createMcpServer.js";
import { DeferredS3Store } from "../storage/deferredS3.js";
import { loadSetup } from "./setup.js";
import { numberFlag, parseCommand, UsageError } from "./usage.js";

/**
 * `kitty-images serve [--demo] [--http --host H --port P] [--worker]`: MCP on stdio, or every door over HTTP. On
 * SQLite the server runs the jobs too; on Postgres (KITTY_IMAGES_DATABASE_URL) it only queues, reports and lists,
 * unless --worker makes it a GPU worker as well.
 */
export async function serveCommand(args: string[]): Promise<void> {
  const { values } = parseCommand("serve", args, {
    demo: { type: "boolean" },
    http: { type: "boolean" },
    host: { type: "string" },
    port: { type: "string" },
    worker: { type: "boolean" },
  }, { min: 0, max: 0, name: "" });
  if (!values.http && (values.host !== undefined || values.port !== undefined)) throw new UsageError("--host and --port go with --http");
  const port = numberFlag("port", values.port ?? "8089");
  // Not 0: file links carry the port, so it must be known before listening.
  if (port === undefined || port < 1 || port > 65535) throw new UsageError(`--port must be a port number from 1 to 65535 (got ${values.port})`);
  const http = values.http ? { host: values.host ?? "127.0.0.1", port } : null;

  const { config, log } = await loadSetup("server", { demo: values.demo ?? false });
  if (values.worker && !queueIsShared(config)) {
    throw new UsageError("--worker goes with a shared Postgres queue (KITTY_IMAGES_DATABASE_URL); on the embedded SQLite queue serve runs the jobs itself");
  }
  // A front-end on a shared queue keeps no model folders: the workers have them (list_models shows which).
  const runsJobs = !queueIsShared(config) || values.worker;
  // Only the runner's models have folders here; another engine's live in that app.
  for (const entry of runsJobs ? config.models.entries.filter((model) => model.engine === "diffusers") : []) {
    const onDisk = inspectEntry(entry);
    if (!onDisk.present) log.warn({ model: entry.name, problem: onDisk.problem }, "model in models.yaml is not on disk; generate_image will refuse it");
  }
  // The HTTP door (and its adapter) is loaded only for --http: a stdio server answers tools/list sooner without it.
  const door = http ? await import("../http/httpDoor.js") : null;
  if (http && door) {
    door.assertSafeBinding({ config }, http.host);
    // Before the worker can take a queued job: a port already taken fails the start here.
    await door.assertPortFree(http);
  }
  // Over HTTP, local images are linked through this server, so other hosts can open them.
  const app = await createApp(config, log, {
    runsJobs,
    watchModels: true,
    ...(http && door && config.storage.kind === "local" && { filesBaseUrl: door.publicBaseUrl({ config }, http) }),
  });
  let closeDoor: () => Promise<void>;
  // A stdio client that sent what cannot be answered is told by the session ending.
  const endSession = () => void shutdown("a message too large to answer");
  try {
    closeDoor = http && door ? await openHttp(app, http, door) : openStdio(app, endSession);
  } catch (error) {
    // A port already taken: the job that was running goes back to the queue before the process ends.
    await app.close();
    throw error;
  }

  let closing = false;
  const shutdown = async (reason: string) => {
    if (closing) return;
    closing = true;
    log.info({ reason }, "shutting down");
    await closeDoor().catch((error: unknown) => log.warn({ error: messageOf(error) }, "error while closing the door"));
    await app.close().catch((error: unknown) => log.error({ error: messageOf(error) }, "error while shutting down"));
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
  if (http && door && process.stderr.isTTY) sayHttpUrls(app, http, door);
  if (!http && process.stdin.isTTY) sayStdioUse(config.home);
  if (!http) {
    // The client closing stdin is how stdio MCP servers are told to go.
    process.stdin.on("end", () => void shutdown("stdin closed"));
    process.stdin.on("close", () => void shutdown("stdin closed"));
  }
}

function openStdio(app: App, endSession: () => void): () => Promise<void> {
  const { config, log } = app;
  // Serves both protocol eras: 2025 clients that send initialize and 2026-07-28 clients that start with server/discover.
  const stdio = serveStdio(mcpServerFactory(app, "stdio"), {
    transport: boundedStdioTransport(log, endSession),
    onerror: (error) => log.warn({ error: error.message }, "MCP transport error"),
  });
  log.info({ home: config.home, storage: config.storage.kind, models: config.models.names(), modelsYaml: config.models.sourcePath }, "kitty-images serving MCP on stdio");
  return async () => stdio.close();
}

async function openHttp(app: App, options: HttpDoorOptions, doorModule: typeof import("../http/httpDoor.js")): Promise<() => Promise<void>> {
  const { config, log } = app;
  const door = await doorModule.startHttpDoor(app, options);
  const publicUrl = doorModule.publicBaseUrl(app, options);
  if (config.http.trustedNetworks.some((network) => network.prefix === 0)) {
    log.warn({ trustedNetworks: config.http.trustedNetworks }, "KITTY_IMAGES_TRUSTED_NETWORKS trusts every address: no caller needs the token");
  }
  const downloadHost = app.store instanceof DeferredS3Store ? app.store.downloadHost : null;
  if (downloadHost && isLoopbackAddress(downloadHost) && !isLoopbackAddress(options.host)) {
    log.warn(
      { downloadHost },
      "presigned download URLs point at loopback while this server serves the network: other hosts cannot open them. Set S3_PUBLIC_ENDPOINT_URL to the address they use for S3",
    );
  }
  log.info({ listening: door.url, publicUrl, mcp: `${publicUrl}/mcp`, gallery: `${publicUrl}/gallery`, token: config.http.token ? "required" : "none", home: config.home, storage: config.storage.kind }, "kitty-images serving HTTP");
  return () => door.close();
}

/**
 * `serve` run by a person at a terminal rather than by an MCP client: say what it is and how it is used, then wait
 * (a client could still be typing JSON-RPC here). On stderr: stdout carries the protocol only.
 */
function sayStdioUse(home: string): void {
  const entry = process.argv[1] ?? "dist/cli.js";
  process.stderr.write(
    [
      "",
      "kitty-images is serving MCP on stdio: it waits for an MCP client to talk to it on this terminal's input.",
      "A client starts it itself. For Claude Desktop, add to claude_desktop_config.json:",
      `  ${JSON.stringify({ mcpServers: { "kitty-images": { command: process.execPath, args: [entry, "serve"] } } })}`,
      "To try it without your own models:    kitty-images serve --demo   (or generate \"a red fox\" --demo --wait)",
      "For a browser, KITTY or other hosts:  kitty-images serve --http   (gallery at http://127.0.0.1:8089/gallery)",
      `Data dir: ${home}. Ctrl-C stops it.`,
      "",
    ].join("\n"),
  );
}

/** On a terminal, where to go, as plain lines (the log line says it too, as JSON for supervisors). */
function sayHttpUrls(app: App, http: HttpDoorOptions, doorModule: typeof import("../http/httpDoor.js")): void {
  const base = doorModule.publicBaseUrl(app, http);
  process.stderr.write(
    [
      "",
      `kitty-images is serving on ${base}`,
      `  MCP (Streamable HTTP):  ${base}/mcp`,
      `  gallery:                ${base}/gallery`,
      `  REST (images-service):  ${base}/api/images`,
      `  health:                 ${base}/healthz`,
      app.config.http.token ? "  every request but /healthz needs KITTY_IMAGES_TOKEN (Authorization: Bearer …)" : "  no KITTY_IMAGES_TOKEN is set: only this machine (and KITTY_IMAGES_TRUSTED_NETWORKS) may call it",
      "Ctrl-C stops it.",
      "",
    ].join("\n"),
  );
}
