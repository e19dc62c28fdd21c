import { toolDeclarationFromMcpTool, type SerializedTaskReference, type TaskExecutionEvent } from "@modelcontextprotocol/ext-tasks/client";
import { execa } from "execa";
import path from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { startHttpServer } from "../helpers/httpServer.js";
import { PROJECT_ROOT, RUNNER_PYTHON, SERVER_ENTRY } from "../helpers/paths.js";
import { makeTestHome, serverEnv } from "../helpers/server.js";
import { httpTaskClient, stdioTaskClient, type TaskClient } from "../helpers/taskClients.js";

/**
 * Generation as an MCP task, through clients nobody here wrote, against the built server and the real runner:
 * the SDK maintainers' @modelcontextprotocol/ext-tasks (both eras, stdio and HTTP) and the Python mcp 2.x client.
 */
const generate = { prompt: "a lighthouse, as a task", model: "tiny_sd15", width: 256, height: 256, steps: 24 };

function statusMessages(events: TaskExecutionEvent<unknown>[]): string[] {
  return events.flatMap((event) => (event.type === "task" && event.task.statusMessage ? [event.task.statusMessage] : []));
}

/** The steps a task reported, in order: they may repeat between polls, never go back. */
function steps(messages: string[]): number[] {
  return messages.flatMap((message) => {
    const match = /^step (\d+)\/\d+/.exec(message);
    return match ? [Number(match[1])] : [];
  });
}

describe("generate_image as an MCP task", () => {
  const open: TaskClient[] = [];
  /** The HTTP server's token: tasks go through the same access check as every request. */
  const token = "task-test-token-0123456789";
  afterAll(async () => {
    for (const each of open) await each.close();
  });

  it("2026-07-28 over stdio: a task at once, tasks/get climbs through the steps, the result carries the image", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const task = await stdioTaskClient(home, "modern");
    open.push(task);
    expect(task.session.capabilities).toMatchObject({ execution: true, cancellation: true });
    const execution = await task.session.callTool("generate_image", generate);
    expect(execution.kind).toBe("task");
    const taskId = execution.handle!.taskId;
    const events: TaskExecutionEvent<unknown>[] = [];
    const { outcome } = await execution.settle({ onEvent: (event) => void events.push(event) });
    expect(outcome.status).toBe("completed");
    const result = (outcome as { result: any }).result;
    expect(result.structuredContent).toMatchObject({ jobId: taskId, status: "done", images: [{ width: 256, height: 256 }] });
    expect(result.content.some((block: { type: string; mimeType?: string }) => block.type === "image" && block.mimeType === "image/webp")).toBe(true);
    const seen = steps(statusMessages(events));
    expect(seen.length, statusMessages(events).join(" | ")).toBeGreaterThan(0);
    expect(seen).toEqual([...seen].sort((a, b) => a - b));
    // The task is the job: the plain tools answer for the same id.
    const status = await task.client.callTool({ name: "job_status", arguments: { jobId: taskId } });
    expect(status.structuredContent).toMatchObject({ status: "done" });
  });

  it("2026-07-28 over stdio: cancelling the task cancels its job", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const task = await stdioTaskClient(home, "modern");
    open.push(task);
    const execution = await task.session.callTool("generate_image", { ...generate, steps: 150 });
    const taskId = execution.handle!.taskId;
    await execution.cancel();
    const { outcome } = await execution.settle();
    expect(outcome.status).toBe("cancelled");
    const status = await task.client.callTool({ name: "job_status", arguments: { jobId: taskId } });
    expect(status.structuredContent).toMatchObject({ status: "cancelled" });
  });

  it("2026-07-28 over stdio: a client that reconnects after a server restart still gets its task", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const first = await stdioTaskClient(home, "modern", "kitty-images-restart");
    const execution = await first.session.callTool("generate_image", { ...generate, steps: 60 });
    expect(execution.kind).toBe("task");
    const before = await first.session.task(execution.handle!.taskId).snapshot();
    expect(before.status).toBe("working");
    // Handing off keeps the task (closing the session would cancel what it still owns).
    let reference: SerializedTaskReference | undefined;
    if (execution.kind === "task") await execution.handoff((persisted) => void (reference = persisted));
    expect(reference).toMatchObject({ generation: "v2", taskId: execution.handle!.taskId });
    // The client goes away as a process does, without closing its session: ext-tasks 0.2.2's session.close() right
    // after a handoff can still find the execution it owned and cancel it. The server exits with its stdin; the
    // job goes back to the queue.
    await first.client.close();

    const second = await stdioTaskClient(home, "modern", "kitty-images-restart");
    open.push(second);
    const resumed = await second.session.resumeTask(reference!);
    const { outcome } = await resumed.settle();
    expect(outcome.status).toBe("completed");
    expect((outcome as { result: any }).result.structuredContent).toMatchObject({ jobId: reference!.taskId, status: "done" });
  });

  it("over HTTP, token-checked: a 2026-07-28 task climbs through the steps to its image, and a 2025-11-25 one runs too", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const server = await startHttpServer(home, { KITTY_IMAGES_TOKEN: token });
    try {
      const task = await httpTaskClient(server.url, token);
      open.push(task);
      const execution = await task.session.callTool("generate_image", generate);
      expect(execution.kind).toBe("task");
      const events: TaskExecutionEvent<unknown>[] = [];
      const { outcome } = await execution.settle({ onEvent: (event) => void events.push(event) });
      expect(outcome.status).toBe("completed");
      expect((outcome as { result: any }).result.structuredContent).toMatchObject({ jobId: execution.handle!.taskId, status: "done" });
      const seen = steps(statusMessages(events));
      expect(seen.length, statusMessages(events).join(" | ")).toBeGreaterThan(0);
      expect(seen).toEqual([...seen].sort((a, b) => a - b));

      // The 2025 wire over HTTP is stateless here: each tasks/* request stands alone, read from the database.
      const legacy = await httpTaskClient(server.url, token, "legacy");
      open.push(legacy);
      expect(legacy.client.getNegotiatedProtocolVersion()).toBe("2025-11-25");
      const { tools } = await legacy.client.listTools();
      const declaration = toolDeclarationFromMcpTool(tools.find((tool) => tool.name === "generate_image")!);
      const old = await legacy.session.callTool("generate_image", { ...generate, steps: 4 }, { declaration, task: { preference: "prefer" } });
      expect(old.kind).toBe("task");
      expect((await old.settle()).outcome.status).toBe("completed");
      // Without the token, no task is shown.
      const refused = await fetch(`${server.url}/mcp`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tasks/get", params: { taskId: execution.handle!.taskId } }) });
      expect(refused.status).toBe(401);
    } finally {
      await server.stop();
    }
  });

  it("over HTTP: cancelling a task cancels its job, and a task outlives a restart of the server", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    let server = await startHttpServer(home, { KITTY_IMAGES_TOKEN: token });
    try {
      const first = await httpTaskClient(server.url, token);
      const doomed = await first.session.callTool("generate_image", { ...generate, steps: 150 });
      await doomed.cancel();
      expect((await doomed.settle()).outcome.status).toBe("cancelled");
      const status = await first.client.callTool({ name: "job_status", arguments: { jobId: doomed.handle!.taskId } });
      expect(status.structuredContent).toMatchObject({ status: "cancelled" });

      const kept = await first.session.callTool("generate_image", { ...generate, steps: 60 });
      const taskId = kept.handle!.taskId;
      expect((await first.session.task(taskId).snapshot()).status).toBe("working");
      if (kept.kind === "task") await kept.handoff(() => undefined);
      await first.client.close();
      await server.stop(); // SIGTERM: the running job goes back to the queue
      server = await startHttpServer(home, { KITTY_IMAGES_TOKEN: token });
      const second = await httpTaskClient(server.url, token);
      open.push(second);
      const resumed = await second.session.resumeTask({ endpointId: "kitty-images-http", generation: "v2", taskId, originalOperation: "tools/call" });
      const { outcome } = await resumed.settle();
      expect(outcome.status).toBe("completed");
      expect((outcome as { result: any }).result.structuredContent).toMatchObject({ jobId: taskId, status: "done" });
    } finally {
      await server.stop();
    }
  });

  it("2025-11-25 over stdio: the experimental shape, through the same client library", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const task = await stdioTaskClient(home, "legacy");
    open.push(task);
    expect(task.client.getNegotiatedProtocolVersion()).toBe("2025-11-25");
    const { tools } = await task.client.listTools();
    const declaration = toolDeclarationFromMcpTool(tools.find((tool) => tool.name === "generate_image")!);
    expect(declaration.taskSupport).toBe("optional");
    const execution = await task.session.callTool("generate_image", { ...generate, steps: 8 }, { declaration, task: { preference: "prefer", retentionMs: 3600_000 } });
    expect(execution.kind).toBe("task");
    const snapshot = await task.session.task(execution.handle!.taskId).snapshot();
    expect(snapshot.retentionMs).toBe(3600_000);
    const { outcome } = await execution.settle();
    expect(outcome.status).toBe("completed");
    expect((outcome as { result: any }).result.structuredContent).toMatchObject({ status: "done" });
    const listed = await task.session.listTasks();
    expect(listed.tasks.map((each) => each.taskId)).toContain(execution.handle!.taskId);
  });

  it("the Python mcp 2.x client, with tasks declared as its extension, resolves a task by polling tasks/get", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const { stdout } = await execa(RUNNER_PYTHON, [path.join(PROJECT_ROOT, "test/clients/python_task_client.py"), SERVER_ENTRY], {
      env: { ...serverEnv(home, { KITTY_IMAGES_LOG_LEVEL: "warn" }), NODE: process.execPath },
      extendEnv: false,
      timeout: 180_000,
    });
    const seen = JSON.parse(stdout.trim().split("\n").at(-1)!);
    expect(seen.protocolVersion).toBe("2026-07-28");
    expect(seen.created).toMatchObject({ resultType: "task", status: "working" });
    expect(seen.result).toMatchObject({ jobId: seen.created.taskId, status: "done" });
    expect(seen.statuses.at(-1)).toBe("completed");
    expect(seen.cancelled).toBe("cancelled");
  });
});
