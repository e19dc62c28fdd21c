import { InMemoryTransport } from "@modelcontextprotocol/client";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mcpServerFactory } from "../../src/mcp/createMcpServer.js";
import type { App } from "../../src/mcp/app.js";
import { startInProcess, type InProcessServer } from "../helpers/inProcess.js";
import { waitUntil } from "../helpers/waitUntil.js";

const TASKS = "io.modelcontextprotocol/tasks";
const MODERN_META = (tasks: boolean) => ({
  "io.modelcontextprotocol/protocolVersion": "2026-07-28",
  "io.modelcontextprotocol/clientInfo": { name: "raw-task-client", version: "0" },
  "io.modelcontextprotocol/clientCapabilities": tasks ? { extensions: { [TASKS]: {} } } : {},
});

interface RawAnswer {
  result?: any;
  error?: { code: number; message: string };
}

/** A connection that speaks JSON-RPC by hand, so the test sees each era's task shapes exactly as they go over the wire. */
async function rawConnection(app: App, era: "legacy" | "modern", { tasks = true } = {}) {
  const [client, server] = InMemoryTransport.createLinkedPair();
  const stdio = serveStdio(mcpServerFactory(app, "stdio"), { transport: server });
  const waiting = new Map<number, (answer: RawAnswer) => void>();
  client.onmessage = (message: any) => {
    if (message.id !== undefined) waiting.get(message.id)?.(message);
  };
  await client.start();
  let next = 1;
  const request = (method: string, params: Record<string, unknown> = {}): Promise<RawAnswer> => {
    const id = next++;
    const answer = new Promise<RawAnswer>((resolve) => waiting.set(id, resolve));
    const framed = era === "modern" ? { ...params, _meta: { ...MODERN_META(tasks), ...(params._meta as object) } } : params;
    void client.send({ jsonrpc: "2.0", id, method, params: framed });
    return answer;
  };
  const opening =
    era === "modern"
      ? await request("server/discover")
      : await request("initialize", { protocolVersion: "2025-11-25", capabilities: tasks ? { tasks: {} } : {}, clientInfo: { name: "raw-task-client", version: "0" } });
  if (era === "legacy") await client.send({ jsonrpc: "2.0", method: "notifications/initialized" });
  return { request, opening, close: () => stdio.close() };
}

const generate = { name: "generate_image", arguments: { prompt: "a lighthouse", model: "tiny_sd15", width: 256, height: 256, steps: 4 } };

describe("generation as an MCP task", () => {
  let server: InProcessServer;
  beforeEach(async () => {
    server = await startInProcess();
  });
  afterEach(async () => {
    await server.close();
  });

  describe("2026-07-28: the io.modelcontextprotocol/tasks extension", () => {
    it("is advertised in server/discover", async () => {
      const connection = await rawConnection(server.app, "modern");
      expect(connection.opening.result.capabilities.extensions).toEqual({ [TASKS]: {} });
      expect(connection.opening.result.capabilities.tasks).toBeUndefined();
      await connection.close();
    });

    it("answers generate_image with a task at once; tasks/get works through the job and completes with job_status's answer and the image", async () => {
      const connection = await rawConnection(server.app, "modern");
      const created = (await connection.request("tools/call", generate)).result;
      expect(created).toMatchObject({ resultType: "task", status: "working", ttlMs: 24 * 3600_000, pollIntervalMs: 1000 });
      expect(created.statusMessage).toMatch(/^(queued at position \d+|step \d+\/4)/);
      expect(Date.parse(created.createdAt)).not.toBeNaN();
      expect(created.content).toBeUndefined();
      const seen: string[] = [];
      let task: any;
      await waitUntil("the task has ended", async () => {
        task = (await connection.request("tasks/get", { taskId: created.taskId })).result;
        seen.push(task.statusMessage);
        return task.status !== "working";
      });
      expect(task).toMatchObject({ taskId: created.taskId, status: "completed", resultType: "complete", statusMessage: `done: job ${created.taskId}` });
      expect(task.pollIntervalMs).toBeUndefined();
      expect(task.result.structuredContent).toMatchObject({ jobId: created.taskId, status: "done", images: [{ width: 256, height: 256 }] });
      expect(task.result.content.map((block: { type: string }) => block.type)).toEqual(["text", "text", "image"]);
      expect(task.result.isError).toBeUndefined();
      expect(task.result.resultType).toBe("complete");
      // The task is the job: job_status answers for the same id.
      expect(await server.ok("job_status", { jobId: created.taskId })).toMatchObject({ status: "done" });
      await connection.close();
    });

    it("cancels the job on tasks/cancel (acknowledged at once; the task reads cancelled when the job has stopped)", async () => {
      server.engine.script.push("hang");
      const connection = await rawConnection(server.app, "modern");
      const created = (await connection.request("tools/call", generate)).result;
      await waitUntil("the job runs", async () => (await server.app.queue.get(created.taskId)).state === "running");
      expect((await connection.request("tasks/cancel", { taskId: created.taskId })).result).toMatchObject({ resultType: "complete" });
      await waitUntil("the task reads cancelled", async () => (await connection.request("tasks/get", { taskId: created.taskId })).result.status === "cancelled");
      expect((await server.app.queue.get(created.taskId)).state).toBe("cancelled");
      const again = await connection.request("tasks/cancel", { taskId: created.taskId });
      expect(again.error).toMatchObject({ code: -32602, message: expect.stringContaining("already cancelled") });
      await connection.close();
    });

    it("ends a failed job's task completed, with the job's error as an isError result", async () => {
      const { EngineJobError } = await import("../../src/engines/engine.js");
      server.engine.script.push(new EngineJobError("out_of_memory", "the GPU ran out of memory"));
      const connection = await rawConnection(server.app, "modern");
      const created = (await connection.request("tools/call", generate)).result;
      let task: any;
      await waitUntil("the task has ended", async () => (task = (await connection.request("tasks/get", { taskId: created.taskId })).result).status !== "working");
      expect(task.status).toBe("completed");
      expect(task.result).toMatchObject({ isError: true, structuredContent: { status: "failed", error: { code: "out_of_memory" } } });
      await connection.close();
    });

    it("answers a refused call at once, as without tasks, naming the field", async () => {
      const connection = await rawConnection(server.app, "modern");
      const answer = (await connection.request("tools/call", { name: "generate_image", arguments: { prompt: "x", width: 1001 } })).result;
      expect(answer.resultType).toBe("complete");
      expect(answer.isError).toBe(true);
      expect(answer.content[0].text).toMatch(/width must be a multiple of 8/);
      await connection.close();
    });

    it("says why a task id is unknown, and that tasks here never ask for input", async () => {
      const connection = await rawConnection(server.app, "modern");
      const unknown = await connection.request("tasks/get", { taskId: "no-such-task" });
      expect(unknown.error).toMatchObject({ code: -32602, message: expect.stringContaining("no task 'no-such-task'") });
      const created = (await connection.request("tools/call", generate)).result;
      const update = await connection.request("tasks/update", { taskId: created.taskId, inputResponses: {} });
      expect(update.error).toMatchObject({ code: -32602, message: expect.stringContaining("never ask for input") });
      const missing = await connection.request("tasks/get", {});
      expect(missing.error?.code).toBe(-32602);
      await connection.close();
    });

    it("leaves a client without the extension as it was: a plain result with the jobId, and only tools that queue run as tasks", async () => {
      const plain = await rawConnection(server.app, "modern", { tasks: false });
      const answer = (await plain.request("tools/call", generate)).result;
      expect(answer).toMatchObject({ resultType: "complete", structuredContent: { jobId: expect.any(String), status: "queued" } });
      await plain.close();
      const withTasks = await rawConnection(server.app, "modern");
      const listed = (await withTasks.request("tools/call", { name: "list_models", arguments: {} })).result;
      expect(listed.resultType).toBe("complete");
      await withTasks.close();
    });
  });

  describe("2025-11-25: the experimental tasks of the core protocol", () => {
    it("advertises tasks in initialize and execution.taskSupport on the tools that queue, only in this era", async () => {
      const connection = await rawConnection(server.app, "legacy");
      expect(connection.opening.result.capabilities.tasks).toEqual({ list: {}, cancel: {}, requests: { tools: { call: {} } } });
      const tools = (await connection.request("tools/list")).result.tools as Array<{ name: string; execution?: unknown }>;
      expect(tools.filter((tool) => tool.execution).map((tool) => tool.name).sort()).toEqual(["edit_image", "generate_image", "upscale_image"]);
      expect(tools.find((tool) => tool.name === "generate_image")!.execution).toEqual({ taskSupport: "optional" });
      await connection.close();
      const modern = await rawConnection(server.app, "modern");
      const modernTools = (await modern.request("tools/list")).result.tools as Array<{ execution?: unknown }>;
      expect(modernTools.some((tool) => tool.execution)).toBe(false);
      await modern.close();
    });

    it("creates a task with the asked ttl, blocks tasks/result until the job ends, and lists it", async () => {
      const connection = await rawConnection(server.app, "legacy");
      const created = (await connection.request("tools/call", { ...generate, task: { ttl: 120_000 } })).result;
      expect(created.task).toMatchObject({ status: "working", ttl: 120_000, pollInterval: 1000 });
      expect(created.content).toBeUndefined();
      const result = (await connection.request("tasks/result", { taskId: created.task.taskId })).result;
      expect(result.structuredContent).toMatchObject({ jobId: created.task.taskId, status: "done" });
      expect(result._meta["io.modelcontextprotocol/related-task"]).toEqual({ taskId: created.task.taskId });
      expect((await connection.request("tasks/get", { taskId: created.task.taskId })).result).toMatchObject({ status: "completed", ttl: 120_000 });
      const listed = (await connection.request("tasks/list")).result;
      expect(listed.tasks.map((task: { taskId: string }) => task.taskId)).toContain(created.task.taskId);
      await connection.close();
    });

    it("keeps an asked ttl within a minute and a week", async () => {
      const connection = await rawConnection(server.app, "legacy");
      const short = (await connection.request("tools/call", { ...generate, task: { ttl: 5 } })).result;
      const long = (await connection.request("tools/call", { ...generate, task: { ttl: 365 * 24 * 3600_000 } })).result;
      expect([short.task.ttl, long.task.ttl]).toEqual([60_000, 7 * 24 * 3600_000]);
      await connection.close();
    });

    it("cancels at once: the task reads cancelled in the answer, tasks/result refuses, the job is cancelled", async () => {
      server.engine.script.push("hang");
      const connection = await rawConnection(server.app, "legacy");
      const created = (await connection.request("tools/call", { ...generate, task: {} })).result;
      await waitUntil("the job runs", async () => (await server.app.queue.get(created.task.taskId)).state === "running");
      const cancelled = (await connection.request("tasks/cancel", { taskId: created.task.taskId })).result;
      expect(cancelled).toMatchObject({ taskId: created.task.taskId, status: "cancelled" });
      expect((await connection.request("tasks/result", { taskId: created.task.taskId })).error).toMatchObject({ code: -32602, message: expect.stringContaining("was cancelled") });
      await waitUntil("the job is cancelled", async () => (await server.app.queue.get(created.task.taskId)).state === "cancelled");
      expect((await connection.request("tasks/cancel", { taskId: created.task.taskId })).error?.code).toBe(-32602);
      await connection.close();
    });

    it("lists every unexpired task and refuses a cursor it did not make", async () => {
      const connection = await rawConnection(server.app, "legacy");
      const ids: string[] = [];
      for (let i = 0; i < 3; i++) ids.push((await connection.request("tools/call", { ...generate, task: {} })).result.task.taskId);
      const { tasks } = (await connection.request("tasks/list")).result;
      expect(tasks.map((task: { taskId: string }) => task.taskId).sort()).toEqual([...ids].sort());
      expect((await connection.request("tasks/list", { cursor: "not-a-cursor" })).error?.code).toBe(-32602);
      await connection.close();
    });
  });

  it("forgets an expired task, never its job or images", async () => {
    const connection = await rawConnection(server.app, "legacy");
    const created = (await connection.request("tools/call", { ...generate, task: { ttl: 60_000 } })).result;
    await connection.request("tasks/result", { taskId: created.task.taskId });
    const later = new Date(Date.now() + 61_000);
    expect(await server.app.tasks.get(created.task.taskId, later)).toBeUndefined();
    expect(await server.app.tasks.get(created.task.taskId, new Date())).toMatchObject({ taskId: created.task.taskId, tool: "generate_image" });
    expect(await server.app.tasks.forgetExpired(later)).toBe(1);
    expect((await connection.request("tasks/get", { taskId: created.task.taskId })).error).toMatchObject({ code: -32602, message: expect.stringContaining("job_status") });
    expect(await server.ok("job_status", { jobId: created.task.taskId })).toMatchObject({ status: "done", images: [expect.anything()] });
    await connection.close();
  });
});
