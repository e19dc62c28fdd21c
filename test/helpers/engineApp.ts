import { Client, InMemoryTransport } from "@modelcontextprotocol/client";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, beforeEach } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createApp, createMcpServer, type App } from "../../src/app/createApp.js";
import { RUNNER_PYTHON } from "./paths.js";
import { toolCalls, type ToolCalls } from "./toolCalls.js";
import { waitUntil } from "./waitUntil.js";

export interface EngineApp extends ToolCalls {
  app: App;
  client: Client;
  /** What the app logged at warn and above, one JSON line each: an engine's complaint shows here. */
  warnings: string[];
  /** job_status until the job ends (fails the test after 20 s). */
  ended(jobId: string): Promise<Record<string, any>>;
  close(): Promise<void>;
}

/**
 * The real app (queue, worker, engine router, local storage, index, tools) with no stand-in engine, linked to an SDK
 * client in memory: for engines that are other apps, pointed by `env` at a stand-in of that app's API.
 */
export async function startEngineApp(modelsYaml: string[], env: Record<string, string>): Promise<EngineApp> {
  const home = mkdtempSync(path.join(tmpdir(), "kitty-engine-"));
  writeFileSync(path.join(home, "models.yaml"), [...modelsYaml, ""].join("\n"));
  const config = loadConfig({ KITTY_IMAGES_HOME: home, MODELS_YAML: path.join(home, "models.yaml"), KITTY_IMAGES_STORAGE: "local", KITTY_IMAGES_PYTHON: RUNNER_PYTHON, ...env });
  const warnings: string[] = [];
  const app = await createApp(config, pino({ level: "warn" }, { write: (line: string) => void warnings.push(line) }), { timing: { backoff: { first: 5, max: 20 }, queuePollMs: 20, cancelPollMs: 10, leaseHeartbeatMs: 100 } });
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  const stdio = serveStdio(() => createMcpServer(app), { transport: serverTransport });
  const client = new Client({ name: "engine-tests", version: "0" });
  await client.connect(clientTransport);
  const calls = toolCalls(client);
  return {
    app,
    client,
    warnings,
    ...calls,
    ended: (jobId) =>
      waitUntil(`job ${jobId} ends`, async () => {
        const status = await calls.ok("job_status", { jobId, wait_seconds: 5 });
        return ["done", "failed", "cancelled"].includes(status.status) && status;
      }, { timeoutMs: 20_000, intervalMs: 0 }),
    async close() {
      await client.close();
      await stdio.close();
      await app.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

/** What each engine test resets between tests: a stand-in that can be told to misbehave, and how slow its steps are. */
interface StandIn {
  url: string;
  mode: string;
  stepMs: number;
  close(): Promise<void>;
}

/**
 * For a describe block: a stand-in of another app's API and the real app pointed at it, started before the block's
 * tests and stopped after them; the stand-in is reset to behave (fast steps) before each test. Read the fields in tests.
 */
export function useEngineApp<S extends StandIn>(start: () => Promise<S>, modelsYaml: string[], env: (standIn: S) => Record<string, string>) {
  const context = {} as { standIn: S; server: EngineApp };
  beforeAll(async () => {
    context.standIn = await start();
    context.server = await startEngineApp(modelsYaml, env(context.standIn));
  });
  afterAll(async () => {
    await context.server?.close();
    await context.standIn?.close();
  });
  beforeEach(() => {
    context.standIn.mode = "ok";
    context.standIn.stepMs = 5;
  });
  return context;
}
