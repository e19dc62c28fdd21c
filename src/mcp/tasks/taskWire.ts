import { ProtocolError, ProtocolErrorCode, RELATED_TASK_META_KEY, type McpServer } from "@modelcontextprotocol/server";
import { z } from "zod";
import type { OpenTask, TaskBook, TaskSnapshot } from "./taskBook.js";

/** The 2026-07-28 extension's id, as a client declares it per request and a server in server/discover. */
export const TASKS_EXTENSION = "io.modelcontextprotocol/tasks";

/** The protocol era an MCP server instance serves: 2025-11-25 (initialize) or 2026-07-28 (server/discover). */
export type Era = "legacy" | "modern";

const taskIdParams = z.looseObject({ taskId: z.string({ error: "taskId is required: the id a tools/call returned" }) });
const listParams = z.looseObject({ cursor: z.string().optional() }).optional();

/** What a tools/call that runs as a task answers in each era. */
export function createTaskResult(era: Era, task: TaskSnapshot): Record<string, unknown> {
  return era === "modern" ? { ...modernTask(task), resultType: "task" } : { task: legacyTask(task) };
}

// 2026-07-28: the `io.modelcontextprotocol/tasks` extension (SEP-2663). tasks/get carries the result once the
// task completes; there is no tasks/result or tasks/list; cancel is acknowledged and takes effect as the job stops.

function modernTask(task: TaskSnapshot) {
  const { pollIntervalMs, ...rest } = task;
  return { ...rest, ...(pollIntervalMs !== undefined && { pollIntervalMs }) };
}

export function serveModernTasks(server: McpServer, book: TaskBook): void {
  const protocol = server.server;
  protocol.registerCapabilities({ extensions: { [TASKS_EXTENSION]: {} } });
  protocol.setRequestHandler("tasks/get", { params: taskIdParams }, async ({ taskId }) => detailed(book, await book.find(taskId)));
  protocol.setRequestHandler("tasks/cancel", { params: taskIdParams }, async ({ taskId }) => {
    await book.cancel(taskId, { atOnce: false });
    return {};
  });
  protocol.setRequestHandler("tasks/update", { params: taskIdParams }, async ({ taskId }) => {
    const { status } = await book.snapshot(await book.find(taskId));
    throw new ProtocolError(ProtocolErrorCode.InvalidParams, `task '${taskId}' is ${status}, not input_required: image tasks never ask for input`);
  });
}

async function detailed(book: TaskBook, task: OpenTask): Promise<Record<string, unknown>> {
  const snapshot = modernTask(await book.snapshot(task));
  // A 2026-07-28 CallToolResult says what kind of result it is, inside a task as anywhere.
  return snapshot.status === "completed" ? { ...snapshot, result: { ...(await book.result(task)), resultType: "complete" } } : snapshot;
}

// 2025-11-25: tasks in the core protocol, experimental. The call asks with `task: {ttl}`; tools say
// `execution.taskSupport`; tasks/result blocks until the end; a cancelled task is cancelled at once.

function legacyTask(task: TaskSnapshot) {
  const { ttlMs, pollIntervalMs, ...rest } = task;
  return { ...rest, ttl: ttlMs, ...(pollIntervalMs !== undefined && { pollInterval: pollIntervalMs }) };
}

/** The `execution` a 2025-era tools/list shows on the tools that may run as tasks (the 2026 wire has no such field). */
export const LEGACY_TASK_EXECUTION = { taskSupport: "optional" } as const;

export function serveLegacyTasks(server: McpServer, book: TaskBook): void {
  const protocol = server.server;
  protocol.registerCapabilities({ tasks: { list: {}, cancel: {}, requests: { tools: { call: {} } } } });
  protocol.setRequestHandler("tasks/get", { params: taskIdParams }, async ({ taskId }) => legacyTask(await book.snapshot(await book.find(taskId))));
  protocol.setRequestHandler("tasks/result", { params: taskIdParams }, async ({ taskId }, context) => {
    const task = await book.untilEnded(await book.find(taskId), context.mcpReq.signal);
    const { status } = await book.snapshot(task);
    if (status === "cancelled") throw new ProtocolError(ProtocolErrorCode.InvalidParams, `task '${task.record.taskId}' was cancelled; it has no result`);
    const result = await book.result(task);
    return { ...result, _meta: { ...result._meta, [RELATED_TASK_META_KEY]: { taskId: task.record.taskId } } };
  });
  protocol.setRequestHandler("tasks/list", { params: listParams }, async (params) => {
    const page = await book.page(params?.cursor);
    const tasks = await Promise.all(page.tasks.map(async (task) => legacyTask(await book.snapshot(task))));
    return { tasks, ...(page.nextCursor && { nextCursor: page.nextCursor }) };
  });
  protocol.setRequestHandler("tasks/cancel", { params: taskIdParams }, async ({ taskId }) => legacyTask(await book.snapshot(await book.cancel(taskId, { atOnce: true }))));
}
