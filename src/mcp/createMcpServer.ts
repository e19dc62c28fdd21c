import { McpServer, type McpRequestContext } from "@modelcontextprotocol/server";
import { VERSION } from "../core/version.js";
import type { Door } from "../uploads/imageInputs.js";
import type { App } from "./app.js";
import { cancelJob } from "./tools/cancelJob.js";
import { registerGalleryApp } from "./tools/galleryApp.js";
import { generateImage } from "./tools/generateImage.js";
import { jobStatus } from "./tools/jobStatus.js";
import { listLatestImages } from "./tools/listLatestImages.js";
import { listModels, listModelsWithWorkers } from "./tools/listModels.js";
import { selectImage } from "./tools/selectImage.js";
import { upscaleImage } from "./tools/upscaleImage.js";
import { editImage } from "./tools/editImage.js";
import { registerTool, type AnyTool, type ToolDeps } from "./tools/toolKit.js";
import { acceptTaskCalls } from "./tasks/taskCalls.js";
import { TASK_TOOLS, TaskBook } from "./tasks/taskBook.js";
import { LEGACY_TASK_EXECUTION, serveLegacyTasks, serveModernTasks, type Era } from "./tasks/taskWire.js";

const TOOLS: AnyTool[] = [generateImage, upscaleImage, editImage, jobStatus, listLatestImages, selectImage, cancelJob, listModels];

/** What tool handlers get, from whichever door calls them. */
export function toolDeps(app: App, door: Door): ToolDeps {
  return {
    config: app.config,
    queue: app.queue,
    index: app.index,
    imageInputs: app.imageInputs,
    door,
    store: app.store,
    links: app.links,
    log: app.log,
    workers: app.workers,
    databaseTrouble: app.databaseTrouble,
    engineModels: (name) => app.engineModels(name),
  };
}

/**
 * How long 2026-07-28 clients may keep what these answer (SEP-2549; 2025-era answers carry no such fields). The
 * tools, the gallery App and what the server says of itself change only with a new version, the same for every
 * caller: a day, and shared caches may keep them. Without hints the SDK says 0, and clients list again every turn.
 */
const CACHE_HINTS = {
  "server/discover": { ttlMs: 24 * 3600_000, cacheScope: "public" },
  "tools/list": { ttlMs: 24 * 3600_000, cacheScope: "public" },
  "resources/list": { ttlMs: 24 * 3600_000, cacheScope: "public" },
  "resources/read": { ttlMs: 24 * 3600_000, cacheScope: "public" },
} as const;

/**
 * One MCP server over the app: cheap, so each connection (and each protocol era) may get its own. `era` is what
 * the serving entry (serveStdio, createMcpHandler) says the instance will speak; tasks differ by era.
 */
export function createMcpServer(app: App, door: Door, era: Era): McpServer {
  const server = new McpServer(
    { name: "kitty-images", version: VERSION },
    {
      cacheHints: CACHE_HINTS,
      instructions:
        "Local image generation. generate_image queues a job and returns a jobId at once; job_status with wait_seconds " +
        "waits for it; select_image turns the result into an imageRef {downloadUrl, storageUri} for downstream tools.",
    },
  );
  const deps = toolDeps(app, door);
  const book = new TaskBook(deps, app.tasks, app.config.taskTtlMs);
  // Before any tool is registered: the tools/call handler McpServer installs with the first one is wrapped then.
  acceptTaskCalls(server, era, book, deps);
  if (era === "modern") serveModernTasks(server, book);
  else serveLegacyTasks(server, book);
  for (const tool of TOOLS) {
    const registered = registerTool(server, tool === listModels && app.workers ? listModelsWithWorkers : tool, deps);
    if (era === "legacy" && TASK_TOOLS.has(tool.name)) registered.execution = LEGACY_TASK_EXECUTION;
  }
  registerGalleryApp(server);
  return server;
}

/** The factory both serving entries take: each instance is built for the era it will serve. */
export const mcpServerFactory = (app: App, door: Door) => (context: McpRequestContext) => createMcpServer(app, door, context.era);
