import { execa } from "execa";
import { createInterface } from "node:readline";
import { describe, expect, inject, it } from "vitest";
import { SERVER_ENTRY } from "./helpers/paths.js";
import { makeTestHome, serverEnv } from "./helpers/server.js";
import { waitUntil } from "./helpers/waitUntil.js";

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
