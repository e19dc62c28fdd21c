import type { CallToolResult, McpServer, ServerContext } from "@modelcontextprotocol/server";
import { errorResult, parseArguments, runTool, type ToolDeps } from "../tools/toolKit.js";
import { TASK_TOOLS, type TaskBook } from "./taskBook.js";
import { createTaskResult, TASKS_EXTENSION, type Era } from "./taskWire.js";

const CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities";

type RawHandler = (request: { params?: Record<string, unknown> }, context: ServerContext) => Promise<unknown>;
interface WrappingServer {
  _wrapHandler(method: string, handler: RawHandler): RawHandler;
}

/**
 * Lets a task-capable client's tools/call of a long tool (generate, upscale, edit) come back as a task. The SDK
 * (2.4) has no task runtime, and a tool with an output schema cannot answer with a CreateTaskResult through
 * McpServer: its result is checked as a CallToolResult and turned into an error. So the call is taken before
 * McpServer sees it, through the protocol's documented per-method wrapping hook, which is installed here before
 * McpServer registers its tools/call handler. Every other call, and any call from a client without tasks, goes
 * on exactly as before.
 */
export function acceptTaskCalls(server: McpServer, era: Era, book: TaskBook, deps: ToolDeps): void {
  const protocol = server.server as unknown as WrappingServer;
  const wrap = protocol._wrapHandler.bind(protocol);
  protocol._wrapHandler = (method, handler) => {
    const wrapped = wrap(method, handler);
    if (method !== "tools/call") return wrapped;
    return async (request, context) => {
      const tool = TASK_TOOLS.get(String(request.params?.name));
      const ask = tool && taskAsk(era, request.params ?? {}, context);
      if (!tool || !ask) return wrapped(request, context);
      const parsed = parseArguments(tool, request.params?.arguments);
      // A refused call is answered at once, as without tasks: there is no job for a task to stand for.
      if (!parsed.ok) return errorResult("invalid_argument", parsed.problems) satisfies CallToolResult;
      const { result, structured } = await runTool(tool, parsed.args, deps, context);
      const jobId = (structured as { jobId?: unknown } | undefined)?.jobId;
      if (result.isError || typeof jobId !== "string") return result;
      const task = await book.open(jobId, tool.name, ask.ttlMs);
      deps.log.info({ taskId: jobId, tool: tool.name, era }, "tools/call runs as a task");
      return createTaskResult(era, await book.snapshot(task));
    };
  };
}

/** Whether this call asked to run as a task, and for how long it wants it kept; null when it did not. */
function taskAsk(era: Era, params: Record<string, unknown>, context: ServerContext): { ttlMs?: number } | null {
  if (era === "legacy") {
    // 2025-11-25: the request says so itself, with `task: {ttl?}`.
    const task = params.task;
    if (task === null || typeof task !== "object") return null;
    const ttl = (task as { ttl?: unknown }).ttl;
    return typeof ttl === "number" && Number.isFinite(ttl) ? { ttlMs: ttl } : {};
  }
  // 2026-07-28: the client declares the extension in the request's capabilities; the server decides.
  const capabilities = (context.mcpReq.envelope as Record<string, unknown> | undefined)?.[CLIENT_CAPABILITIES] as { extensions?: Record<string, unknown> } | undefined;
  return capabilities?.extensions?.[TASKS_EXTENSION] !== undefined ? {} : null;
}
