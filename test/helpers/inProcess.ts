import { Client, InMemoryTransport } from "@modelcontextprotocol/client";
import { serveStdio } from "@modelcontextprotocol/server/stdio";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { loadConfig } from "../../src/config.js";
import { createApp } from "../../src/app/createApp.js";
import type { App } from "../../src/mcp/app.js";
import { mcpServerFactory } from "../../src/mcp/createMcpServer.js";
import { FakeEngine } from "./fakeEngine.js";
import { toolCalls, type ToolCalls } from "./toolCalls.js";

export interface InProcessServer extends ToolCalls {
  app: App;
  engine: FakeEngine;
  client: Client;
  /** Every message the client received, as it came over the wire. */
  received: unknown[];
  close(): Promise<void>;
}

function modelFolder(root: string, name: string, className: string): string {
  const folder = path.join(root, name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(path.join(folder, "model_index.json"), JSON.stringify({ _class_name: className }));
  return folder;
}

/**
 * The real app (queue, worker, local storage, index, tools) around the stand-in engine, linked to an SDK Client
 * in memory through the same stdio entry the CLI uses. `era` picks the client: a 2025 one sends initialize,
 * a 2026-07-28 one starts with server/discover.
 */
export async function startInProcess({ era = "legacy", refinerEntry = false }: { era?: "legacy" | "modern"; refinerEntry?: boolean } = {}): Promise<InProcessServer> {
  const home = mkdtempSync(path.join(tmpdir(), "kitty-inproc-"));
  const models = path.join(home, "models");
  // The same names as test/helpers/server.ts's makeTestHome, so both tiers share one validation table.
  const yaml = [
    `tiny_sd15: ${modelFolder(models, "sd15", "StableDiffusionPipeline")}`,
    "tiny_sdxl:",
    `  path: ${modelFolder(models, "sdxl", "StableDiffusionXLPipeline")}`,
    `  refiner: ${modelFolder(models, "sdxl_refiner", "StableDiffusionXLImg2ImgPipeline")}`,
    "  defaults: {width: 256, height: 256, steps: 4}",
    `missing_model: ${path.join(home, "no-such-model")}`,
    // The refiner also as an entry of its own, as the images-service's flat models.yaml lists it.
    ...(refinerEntry ? [`tiny_sdxl_refiner: ${path.join(models, "sdxl_refiner")}`] : []),
    // KITTY's UI names these (REST's style); generate_image takes them too.
    "styles:",
    '  blueprint: "technical blueprint of {prompt}, white lines on blue"',
    '  photo: {prompt: "{prompt}, 35mm photograph", negative: "cartoon"}',
    "",
  ].join("\n");
  writeFileSync(path.join(home, "models.yaml"), yaml);
  const config = loadConfig({ KITTY_IMAGES_HOME: home, MODELS_YAML: path.join(home, "models.yaml"), KITTY_IMAGES_STORAGE: "local" });
  const engine = new FakeEngine();
  const app = await createApp(config, pino({ level: "silent" }), {
    engine,
    timing: { backoff: { first: 5, max: 20 }, queuePollMs: 20, cancelPollMs: 10, leaseHeartbeatMs: 100 },
  });
  const [clientTransport, serverTransport] = InMemoryTransport.createLinkedPair();
  const stdio = serveStdio(mcpServerFactory(app, "stdio"), { transport: serverTransport });
  const client = new Client(
    { name: "kitty-images-fast-tests", version: "0.0.0" },
    era === "modern" ? { versionNegotiation: { mode: { pin: "2026-07-28" } } } : {},
  );
  await client.connect(clientTransport);
  const received: unknown[] = [];
  const deliver = clientTransport.onmessage;
  clientTransport.onmessage = (message, extra) => {
    received.push(message);
    deliver?.(message, extra);
  };

  return {
    app,
    engine,
    client,
    received,
    ...toolCalls(client),
    async close() {
      await client.close();
      await stdio.close();
      await app.close();
      rmSync(home, { recursive: true, force: true });
    },
  };
}

