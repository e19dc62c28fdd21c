import { Client, InMemoryTransport } from "@modelcontextprotocol/client";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, beforeEach } from "vitest";
import { loadConfig, type Config } from "../../src/config.js";
import { createApp } from "../../src/app/createApp.js";
import { createEngine } from "../../src/app/parts.js";
import type { Logger } from "../../src/core/log.js";
import { A1111Engine, type A1111Timing } from "../../src/engines/a1111.js";
import { ComfyUIEngine, type ComfyTiming } from "../../src/engines/comfyui.js";
import { EngineRouter } from "../../src/engines/engineRouter.js";
import { InvokeAIEngine, type InvokeTiming } from "../../src/engines/invokeai.js";
import type { App } from "../../src/mcp/app.js";
import { mcpServerFactory } from "../../src/mcp/createMcpServer.js";
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

/** An app engine's waits as a test sets them, in ms; what it leaves out is production's (or the config's deadline base). */
export interface EngineTimings {
  a1111?: Partial<A1111Timing>;
  comfyui?: Partial<ComfyTiming>;
  invokeai?: Partial<InvokeTiming>;
}

/** Polls a few ms apart, not production's 0.25-1 s: a stand-in answers at once, and every poll's wait adds up over the tier. */
const FAST_POLLS: Required<EngineTimings> = { a1111: { pollMs: 10 }, comfyui: { historyPollMs: 20 }, invokeai: { pollMs: 10 } };

/**
 * The engines createEngine makes from `config`, with the app engines' waits set by the test: a deadline in ms, below
 * the 1 s the *_TIMEOUT_SECONDS variables go down to. Built as createEngine builds them (its URL, auth, and deadline
 * base unless the test sets one); the diffusers engine is createEngine's own. Each engine's file checks createEngine's
 * side with configuredEngine.
 */
function engineWithTimings(config: Config, log: Logger, timings: EngineTimings): EngineRouter {
  const asConfigured = createEngine(config, log);
  return new EngineRouter(config.engine, (name) => {
    const engineLog = log.child({ component: "engine", engine: name });
    if (name === "a1111") {
      return new A1111Engine({ baseUrl: config.a1111.baseUrl, auth: config.a1111.auth, timing: { jobBaseMs: config.a1111.jobTimeoutMs, ...FAST_POLLS.a1111, ...timings.a1111 } }, engineLog);
    }
    if (name === "comfyui") return new ComfyUIEngine({ baseUrl: config.comfyui.baseUrl, timing: { jobBaseMs: config.comfyui.jobTimeoutMs, ...FAST_POLLS.comfyui, ...timings.comfyui } }, engineLog);
    if (name === "invokeai") return new InvokeAIEngine({ baseUrl: config.invokeai.baseUrl, timing: { jobBaseMs: config.invokeai.jobTimeoutMs, ...FAST_POLLS.invokeai, ...timings.invokeai } }, engineLog);
    return asConfigured.engine(name);
  });
}

function engineConfig(home: string, env: Record<string, string>): Config {
  return loadConfig({ KITTY_IMAGES_HOME: home, MODELS_YAML: path.join(home, "models.yaml"), KITTY_IMAGES_STORAGE: "local", KITTY_IMAGES_PYTHON: RUNNER_PYTHON, ...env });
}

/** The engine by that name as the server makes it from `env` (createEngine, production's waits): to check that wiring. */
export function configuredEngine(name: Config["engine"], env: Record<string, string>) {
  const home = mkdtempSync(path.join(tmpdir(), "kitty-engine-"));
  try {
    writeFileSync(path.join(home, "models.yaml"), "\n");
    return createEngine(engineConfig(home, env), pino({ level: "silent" })).engine(name);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/**
 * The real app (queue, worker, engine router, local storage, index, tools) with no stand-in engine, linked to an SDK
 * client in memory: for engines that are other apps, pointed by `env` at a stand-in of that app's API, and waiting
 * as `timings` say (polls a few ms apart unless they say otherwise).
 */
export async function startEngineApp(modelsYaml: string[], env: Record<string, string>, timings: EngineTimings = {}): Promise<EngineApp> {
  const home = mkdtempSync(path.join(tmpdir(), "kitty-engine-"));
  writeFileSync(path.join(home, "models.yaml"), [...modelsYaml, ""].join("\n"));
  const config = engineConfig(home, env);
  const warnings: string[] = [];
  const log = pino({ level: "warn" }, { write: (line: string) => void warnings.push(line) });
  const app = await createApp(config, log, {
    engine: engineWithTimings(config, log, timings),
    timing: { backoff: { first: 5, max: 20 }, queuePollMs: 20, cancelPollMs: 10, leaseHeartbeatMs: 100 },
  });
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  const stdio = serveStdio(mcpServerFactory(app, "stdio"), { transport: serverTransport });
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
export function useEngineApp<S extends StandIn>(start: () => Promise<S>, modelsYaml: string[], env: (standIn: S) => Record<string, string>, timings: EngineTimings = {}) {
  const context = {} as { standIn: S; server: EngineApp };
  beforeAll(async () => {
    context.standIn = await start();
    context.server = await startEngineApp(modelsYaml, env(context.standIn), timings);
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
