#!/usr/bin/env node
import "./requireNode.js";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { execa } from "execa";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import { loadConfig, type Config } from "./config.js";
import { KittyError, messageOf } from "./errors.js";
import { createLogger, type Logger } from "./log.js";
import { formatChecks, runDoctor } from "./doctor.js";
import { inspectModelFolder } from "./models/modelFolder.js";
import { isLoopbackAddress } from "./http/accessGuard.js";
import { assertSafeBinding, publicBaseUrl, startHttpDoor } from "./http/httpDoor.js";
import { createApp, createMcpServer, type App } from "./server.js";
import { S3ImageStore } from "./storage/s3.js";

const USAGE = `kitty-images: MCP tool server for local Stable Diffusion

usage:
  kitty-images serve [--demo]   run the MCP server on stdio (Claude Desktop, KITTY, any MCP client)
                                --demo builds tiny random-weight models and serves those (images are noise)
  kitty-images serve --http [--host 127.0.0.1] [--port 8089]
                                serve HTTP instead: MCP at /mcp (both protocol eras), the images-service REST
                                API under /api/images; KITTY_IMAGES_TOKEN guards it
  kitty-images models           print models.yaml as the server sees it
  kitty-images doctor [--demo]  check models, database, storage and the Python runner; say what to fix
  kitty-images help

Configuration comes from the environment (see README.md): MODELS_YAML, S3_ENDPOINT_URL, KITTY_IMAGES_HOME, ...`;

/** Builds the tiny random-weight pipelines once and writes a models.yaml that points at them. */
async function prepareDemoModels(config: Config, log: Logger): Promise<string> {
  const folder = path.join(config.home, "demo-models");
  const yamlPath = path.join(folder, "models.yaml");
  if (!existsSync(path.join(folder, "sdxl", "model_index.json"))) {
    log.info({ folder }, "building tiny random-weight demo models (images will be noise)");
    mkdirSync(folder, { recursive: true });
    await execa(config.runner.python, ["-m", "diffusers_runner.tiny_models", folder], {
      cwd: config.runner.packageDir,
      env: { PYTHONPATH: config.runner.packageDir, HF_HUB_OFFLINE: "1" },
      stdout: "ignore",
      stderr: "inherit",
    });
  }
  writeFileSync(
    yamlPath,
    [
      "# Demo models: tiny pipelines with random weights. They exercise the real path; their images are noise.",
      `demo_sd15: ${path.join(folder, "sd15")}`,
      "demo_sdxl:",
      `  path: ${path.join(folder, "sdxl")}`,
      `  refiner: ${path.join(folder, "sdxl_refiner")}`,
      "  description: tiny random-weight SDXL (noise images)",
      "  defaults: {width: 512, height: 512, steps: 8}",
      "",
    ].join("\n"),
  );
  return yamlPath;
}

async function configFor(demo: boolean): Promise<{ config: Config; log: Logger }> {
  const config = loadConfig();
  const log = createLogger(config.logLevel);
  if (!demo) return { config, log };
  return { config: loadConfig(process.env, { modelsYaml: await prepareDemoModels(config, log) }), log };
}

interface ServeOptions {
  demo: boolean;
  /** Serve HTTP on host:port instead of MCP on stdio. */
  http: { host: string; port: number } | null;
}

async function serve({ demo, http }: ServeOptions): Promise<void> {
  const { config, log } = await configFor(demo);
  for (const entry of config.models.entries) {
    const onDisk = inspectModelFolder(entry.path);
    if (!onDisk.present) log.warn({ model: entry.name, problem: onDisk.problem }, "model in models.yaml is not on disk; generate_image will refuse it");
  }
  if (http) assertSafeBinding({ config }, http.host);
  // Over HTTP, local images are linked through this server, so other hosts can open them.
  const app = await createApp(config, log, http && config.storage.kind === "local" ? { filesBaseUrl: publicBaseUrl({ config }, http) } : {});
  const closeDoor = http ? await openHttp(app, http) : openStdio(app);

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
  if (!http) {
    // The client closing stdin is how stdio MCP servers are told to go.
    process.stdin.on("end", () => void shutdown("stdin closed"));
    process.stdin.on("close", () => void shutdown("stdin closed"));
  }
}

function openStdio(app: App): () => Promise<void> {
  const { config, log } = app;
  // Serves both protocol eras: 2025 clients that send initialize and 2026-07-28 clients that start with server/discover.
  const stdio = serveStdio(() => createMcpServer(app), { onerror: (error) => log.warn({ error: error.message }, "MCP transport error") });
  log.info({ home: config.home, storage: config.storage.kind, models: config.models.names(), modelsYaml: config.models.sourcePath }, "kitty-images serving MCP on stdio");
  return async () => stdio.close();
}

async function openHttp(app: App, options: { host: string; port: number }): Promise<() => Promise<void>> {
  const { config, log } = app;
  const door = await startHttpDoor(app, options);
  const publicUrl = publicBaseUrl(app, options);
  const downloadHost = app.store instanceof S3ImageStore ? app.store.downloadHost : null;
  if (downloadHost && isLoopbackHost(downloadHost) && !isLoopbackHost(options.host)) {
    log.warn(
      { downloadHost },
      "presigned download URLs point at loopback while this server serves the network: other hosts cannot open them. Set S3_PUBLIC_ENDPOINT_URL to the address they use for S3",
    );
  }
  log.info({ listening: door.url, publicUrl, mcp: `${publicUrl}/mcp`, token: config.http.token ? "required" : "none", home: config.home, storage: config.storage.kind }, "kitty-images serving HTTP");
  return () => door.close();
}

const isLoopbackHost = (host: string) => host === "localhost" || isLoopbackAddress(host.replace(/^\[|\]$/g, ""));

async function doctor(demo: boolean): Promise<void> {
  const { config, log } = await configFor(demo);
  const checks = await runDoctor(config, log);
  process.stdout.write(`${formatChecks(checks)}\n`);
  if (checks.some((entry) => !entry.ok)) process.exitCode = 1;
}

function printModels(): void {
  const config = loadConfig();
  process.stdout.write(`${JSON.stringify({ source: config.models.sourcePath, default: config.models.defaultModel, models: config.models.entries }, null, 2)}\n`);
}

async function main(argv: string[]): Promise<void> {
  const [command = "help", ...rest] = argv;
  switch (command) {
    case "serve": {
      const { values } = parseArgs({
        args: rest,
        options: { demo: { type: "boolean" }, http: { type: "boolean" }, host: { type: "string", default: "127.0.0.1" }, port: { type: "string", default: "8089" } },
      });
      const port = Number(values.port);
      if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`--port must be a port number (got ${values.port})`);
      return serve({ demo: values.demo ?? false, http: values.http ? { host: values.host, port } : null });
    }
    case "models":
      return printModels();
    case "doctor":
      return doctor(rest.includes("--demo"));
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(`${USAGE}\n`);
      return;
    default:
      process.stderr.write(`unknown command '${command}'\n\n${USAGE}\n`);
      process.exitCode = 2;
  }
}

/** A command line that cannot be run as written: exit code 2. */
class UsageError extends Error {}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof UsageError || (error as NodeJS.ErrnoException).code?.startsWith("ERR_PARSE_ARGS")) {
    process.stderr.write(`kitty-images: ${messageOf(error)}\n\n${USAGE}\n`);
    process.exit(2);
  }
  const prefix = error instanceof KittyError ? `${error.code}: ` : "";
  process.stderr.write(`kitty-images: ${prefix}${messageOf(error)}\n`);
  process.exit(1);
});
