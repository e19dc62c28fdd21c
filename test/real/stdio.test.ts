import { execa } from "execa";
import { createInterface } from "node:readline";
import { describe, expect, inject, it } from "vitest";
import { MAX_MESSAGE_BYTES } from "../../src/core/limits.js";
import { SERVER_ENTRY } from "../helpers/paths.js";
import { makeTestHome, serverEnv } from "../helpers/server.js";
import { waitUntil } from "../helpers/waitUntil.js";

/** Read raw, not through the SDK (which skips lines it cannot parse): stdout must carry MCP messages and nothing else. */
describe("stdout of the stdio server", () => {
  it("carries only JSON-RPC messages through start-up, a generation and shutdown; logs go to stderr", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const child = execa(process.execPath, [SERVER_ENTRY, "serve"], { env: serverEnv(home), extendEnv: false, stdin: "pipe", stdout: "pipe", stderr: "pipe", buffer: { stdout: false, stderr: true }, reject: false });
    const lines: string[] = [];
    const waiting = new Map<number, (message: any) => void>();
    createInterface({ input: child.stdout! }).on("line", (line) => {
      lines.push(line);
      try {
        const message = JSON.parse(line);
        waiting.get(message.id)?.(message);
      } catch {
        // recorded in `lines`; the assertion below reports it
      }
    });
    let nextId = 1;
    const request = (method: string, params: object) =>
      new Promise<any>((resolve) => {
        const id = nextId++;
        waiting.set(id, resolve);
        child.stdin!.write(`${JSON.stringify({ jsonrpc: "2.0", id, method, params })}\n`);
      });

    await request("initialize", { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "raw", version: "0" } });
    child.stdin!.write(`${JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" })}\n`);
    const queued = await request("tools/call", { name: "generate_image", arguments: { prompt: "stdout hygiene", model: "tiny_sdxl", steps: 2, refiner: true } });
    const jobId = queued.result.structuredContent.jobId;
    const status = await waitUntil("the job ends", async () => {
      const answer = await request("tools/call", { name: "job_status", arguments: { jobId, wait_seconds: 20 } });
      return ["done", "failed"].includes(answer.result.structuredContent.status) && answer;
    }, { timeoutMs: 120_000, intervalMs: 0 });
    expect(status.result.structuredContent.status).toBe("done");
    child.stdin!.end();
    const result = await child;

    expect(result.exitCode).toBe(0);
    expect(lines.length).toBeGreaterThanOrEqual(3);
    for (const line of lines) expect(JSON.parse(line), line).toMatchObject({ jsonrpc: "2.0" });
    expect(result.stderr).toMatch(/"msg":"job done"/);
    expect(result.stderr).toMatch(/"msg":"diffusers runner ready"/);
  });
});

/** The built server on stdio, spoken to line by line: what a client sees when it sends more than a message may hold. */
function rawStdioServer(home: Awaited<ReturnType<typeof makeTestHome>>) {
  const child = execa(process.execPath, [SERVER_ENTRY, "serve"], { env: serverEnv(home), extendEnv: false, stdin: "pipe", stdout: "pipe", stderr: "pipe", buffer: { stdout: false, stderr: true }, reject: false });
  const answers = new Map<unknown, any>();
  createInterface({ input: child.stdout! }).on("line", (line) => {
    const message = JSON.parse(line);
    if ("id" in message) answers.set(message.id, message);
  });
  const answerTo = (id: unknown) => waitUntil(`the answer to ${JSON.stringify(id)}`, () => answers.get(id), { timeoutMs: 30_000, intervalMs: 20 });
  const send = (text: string) => child.stdin!.write(`${text}\n`);
  return { child, answers, answerTo, send };
}

describe("a message over the size limit on stdio", () => {
  // Past the SDK's own 10 MiB read buffer too, which used to close the transport without a word.
  const huge = "x".repeat(MAX_MESSAGE_BYTES + 1024);

  it("is answered with an error for its id, whether the id comes last (TypeScript SDK) or first (Python SDK), and the session goes on", async () => {
    const server = rawStdioServer(await makeTestHome(inject("tinyModelsDir")));
    server.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "raw", version: "0" } } }));
    await server.answerTo(1);
    server.send(JSON.stringify({ jsonrpc: "2.0", method: "notifications/initialized" }));
    server.send(`{"method":"tools/call","params":{"name":"generate_image","arguments":{"prompt":"${huge}"}},"jsonrpc":"2.0","id":2}`);
    server.send(`{"jsonrpc":"2.0","id":"python-3","method":"tools/call","params":{"name":"generate_image","arguments":{"prompt":"${huge}"}}}`);
    for (const id of [2, "python-3"]) {
      expect(await server.answerTo(id)).toMatchObject({ jsonrpc: "2.0", id, error: { code: -32600, message: expect.stringMatching(new RegExp(`the message is \\d+ bytes; this server reads at most ${MAX_MESSAGE_BYTES} bytes a message`)) } });
    }
    server.send(JSON.stringify({ jsonrpc: "2.0", id: 4, method: "tools/list", params: {} }));
    expect((await server.answerTo(4)).result.tools.length).toBeGreaterThan(0);
    // The client going away ends the server, whatever came before.
    server.child.stdin!.end();
    const result = await server.child;
    expect(result.exitCode).toBe(0);
    expect(result.stderr).toMatch(/refused an MCP message over the size limit/);
  });

  it("ends the session when the message's id cannot be read, so the client is not left waiting", async () => {
    const server = rawStdioServer(await makeTestHome(inject("tinyModelsDir")));
    server.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "raw", version: "0" } } }));
    await server.answerTo(1);
    server.send(`{"jsonrpc":"2.0","method":"tools/call","id":2,"params":{"name":"generate_image","arguments":{"prompt":"${huge}"}},"x":1}`);
    const result = await server.child;
    expect(result.exitCode).toBe(0);
    expect(server.answers.has(2)).toBe(false);
    expect(result.stderr).toMatch(/a message too large to answer/);
  });
});
