import { Client, type ClientOptions } from "@modelcontextprotocol/client";
import { StdioClientTransport } from "@modelcontextprotocol/client/stdio";
import { createWriteStream, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { RUNNER_PYTHON, SERVER_ENTRY } from "./paths.js";
import type { MinioServer } from "./minio.js";
import { toolCalls, type ToolCalls } from "./toolCalls.js";
import { waitUntil } from "./waitUntil.js";

export interface TestHome {
  home: string;
  modelsYaml: string;
}

/** A fresh data dir with a models.yaml naming the tiny pipelines, in both the flat and the rich form. */
export async function makeTestHome(tinyModelsDir: string): Promise<TestHome> {
  const home = await mkdtemp(path.join(tmpdir(), "kitty-home-"));
  const modelsYaml = path.join(home, "models.yaml");
  writeFileSync(
    modelsYaml,
    [
      `tiny_sd15: ${path.join(tinyModelsDir, "sd15")}`,
      "tiny_sdxl:",
      `  path: ${path.join(tinyModelsDir, "sdxl")}`,
      `  refiner: ${path.join(tinyModelsDir, "sdxl_refiner")}`,
      "  defaults: {width: 256, height: 256, steps: 4}",
      `missing_model: ${path.join(home, "no-such-model")}`,
      "tiny_sd15_file:",
      `  path: ${path.join(tinyModelsDir, "single", "sd15.safetensors")}`,
      `  config: ${path.join(tinyModelsDir, "single", "sd15-config")}`,
      `loras: ${path.join(tinyModelsDir, "loras")}`,
      `controlnets: ${path.join(tinyModelsDir, "controlnets")}`,
      `upscalers: ${path.join(tinyModelsDir, "upscalers")}`,
      "",
    ].join("\n"),
  );
  return { home, modelsYaml };
}

export interface RunningServer extends ToolCalls {
  client: Client;
  pid: number;
  logPath: string;
  close(): Promise<void>;
}

export function s3Env(minio: MinioServer, bucket = "kitty-test"): Record<string, string> {
  return {
    S3_ENDPOINT_URL: minio.endpoint,
    S3_ACCESS_KEY: minio.accessKey,
    S3_SECRET_KEY: minio.secretKey,
    S3_BUCKET: bucket,
    S3_REGION: "us-east-1",
  };
}

/** The environment the server gets: only what the tests choose, so a developer's own settings cannot leak in. */
export function serverEnv(testHome: TestHome, extraEnv: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? testHome.home,
    HF_HUB_OFFLINE: "1",
    KITTY_IMAGES_HOME: testHome.home,
    MODELS_YAML: testHome.modelsYaml,
    KITTY_IMAGES_PYTHON: RUNNER_PYTHON,
    KITTY_IMAGES_DEVICE: "cpu",
    KITTY_IMAGES_LOG_LEVEL: "debug",
    ...extraEnv,
  };
}

/**
 * The built server as a child process, driven by the SDK's Client over stdio, exactly as Claude Desktop runs it.
 * The client speaks the 2025 protocol (initialize) unless `clientOptions` pins another negotiation.
 */
export async function startServer(
  testHome: TestHome,
  extraEnv: Record<string, string> = {},
  serveArgs: string[] = [],
  clientOptions: ClientOptions = {},
): Promise<RunningServer> {
  const env = serverEnv(testHome, extraEnv);
  const transport = new StdioClientTransport({ command: process.execPath, args: [SERVER_ENTRY, "serve", ...serveArgs], env, stderr: "pipe" });
  mkdirSync(testHome.home, { recursive: true });
  const logPath = path.join(testHome.home, `server-${Date.now()}.log`);
  const logStream = createWriteStream(logPath, { flags: "a" });
  transport.stderr?.pipe(logStream);
  const client = new Client({ name: "kitty-images-tests", version: "0.0.0" }, clientOptions);
  await client.connect(transport);
  const pid = transport.pid;
  if (pid === null) throw new Error("server process has no pid");

  return {
    client,
    pid,
    logPath,
    ...toolCalls(client, () => `\n--- server log ---\n${readFileSync(logPath, "utf8").slice(-4000)}`),
    async close() {
      await client.close().catch(() => undefined);
      logStream.end();
    },
  };
}

/** Polls job_status with wait_seconds until the job ends; fails the test if it takes longer than `timeoutMs`. */
export async function waitForJob(server: RunningServer, jobId: string, timeoutMs = 120_000): Promise<Record<string, any>> {
  return waitUntil(`job ${jobId} ends`, async () => {
    const status = await server.ok("job_status", { jobId, wait_seconds: 10 });
    return ["done", "failed", "cancelled"].includes(status.status) && status;
  }, { timeoutMs, intervalMs: 0 });
}

/** Waits until the job is running and has reported at least one step. */
export async function waitUntilRunning(server: RunningServer, jobId: string): Promise<void> {
  await waitUntil(`job ${jobId} reports a step`, async () => {
    const status = await server.ok("job_status", { jobId });
    if (status.status !== "queued" && status.status !== "running") throw new Error(`job ended early: ${JSON.stringify(status)}`);
    return status.status === "running" && status.progress.step > 0;
  }, { timeoutMs: 60_000, intervalMs: 50 });
}

/** Children of a process, read from /proc (the runner is the server's child). */
export function childPids(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Whether a process still exists (signal 0 checks without sending anything). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
