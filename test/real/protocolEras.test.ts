import { execa } from "execa";
import path from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { PROJECT_ROOT, RUNNER_PYTHON, SERVER_ENTRY } from "../helpers/paths.js";
import { makeTestHome, serverEnv, startServer, waitForJob, type RunningServer } from "../helpers/server.js";

/** Clients of both protocol eras against the built server over real stdio: ours (TypeScript SDK) and Python's. */
describe("both MCP protocol eras over stdio", () => {
  const servers: RunningServer[] = [];

  afterAll(async () => {
    for (const server of servers) await server.close();
  });

  it.each([
    ["a 2025-era client (initialize)", {}, "2025-11-25"],
    ["a 2026-07-28 client (server/discover, no initialize)", { versionNegotiation: { mode: { pin: "2026-07-28" } } }, "2026-07-28"],
  ] as const)("the TypeScript SDK's client: %s negotiates its version and generates", async (_name, clientOptions, version) => {
    const server = await startServer(await makeTestHome(inject("tinyModelsDir")), {}, [], clientOptions);
    servers.push(server);
    expect(server.client.getNegotiatedProtocolVersion()).toBe(version);
    const queued = await server.ok("generate_image", { prompt: "both eras", model: "tiny_sd15", width: 256, height: 256, steps: 2 });
    expect(await waitForJob(server, queued.jobId)).toMatchObject({ status: "done" });
  });

  it.each([
    ["default mode probes server/discover and speaks 2026-07-28", "auto", "2026-07-28"],
    ["legacy mode sends initialize and speaks 2025-11-25", "legacy", "2025-11-25"],
  ])("the Python mcp 2.x client: %s", async (_name, mode, version) => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const { stdout } = await execa(RUNNER_PYTHON, [path.join(PROJECT_ROOT, "test/clients/python_mcp_client.py"), mode, SERVER_ENTRY], {
      env: { ...serverEnv(home, { KITTY_IMAGES_LOG_LEVEL: "warn" }), NODE: process.execPath },
      extendEnv: false,
      timeout: 180_000,
    });
    const seen = JSON.parse(stdout.trim().split("\n").at(-1)!);
    expect(seen.protocolVersion).toBe(version);
    expect(seen.tools).toEqual(["cancel_job", "edit_image", "generate_image", "job_status", "list_latest_images", "list_models", "select_image", "upscale_image"]);
    expect(seen.refused.isError).toBe(true);
    expect(seen.refused.text).toMatch(/width must be a multiple of 8 between 256 and 2048 \(got 1001\)/);
    expect(seen.job).toMatchObject({ status: "done", images: [{ width: 256, height: 256 }] });
  });
});
