import { execa } from "execa";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, inject, it } from "vitest";
import { SERVER_ENTRY } from "./helpers/paths.js";
import { readPng } from "./helpers/png.js";
import { makeTestHome, serverEnv, startServer, waitForJob, type RunningServer } from "./helpers/server.js";

/** The newcomer's path from the README: no weights, `--demo`, and the whole pipeline still runs for real. */
describe("kitty-images doctor and serve --demo", () => {
  let server: RunningServer | undefined;

  afterAll(async () => {
    await server?.close();
  });

  it("doctor --demo builds the tiny models and finds every part healthy; plain doctor names what is missing", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const { MODELS_YAML: _ours, ...env } = serverEnv(home, { KITTY_IMAGES_LOG_LEVEL: "warn" });
    const demo = await execa(process.execPath, [SERVER_ENTRY, "doctor", "--demo"], { env, extendEnv: false, reject: false });
    expect(demo.exitCode, demo.stdout + demo.stderr).toBe(0);
    expect(demo.stdout).toMatch(/^ok {4}model demo_sdxl: sdxl at .*demo-models\/sdxl \(refiner /m);
    expect(demo.stdout).toMatch(/^ok {4}runner: cpu float32; python [\d.]+, torch /m);
    expect(demo.stdout).not.toMatch(/FAIL/);

    const plain = await execa(process.execPath, [SERVER_ENTRY, "doctor"], { env: serverEnv(home, { KITTY_IMAGES_LOG_LEVEL: "warn" }), extendEnv: false, reject: false });
    expect(plain.exitCode).toBe(1);
    expect(plain.stdout).toMatch(/^FAIL {2}model missing_model: folder .* does not exist$/m);
  });

  it("serve --demo generates with the family defaults (SD 1.5: 512x512, 30 steps, euler_a)", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    server = await startServer(home, {}, ["--demo"]);
    const models = await server.ok("list_models", {});
    expect(models.models.map((model: { name: string; present: boolean }) => [model.name, model.present])).toEqual([
      ["demo_sd15", true],
      ["demo_sdxl", true],
    ]);
    const queued = await server.ok("generate_image", { prompt: "newcomer's first image" });
    expect(queued).toMatchObject({ model: "demo_sd15", width: 512, height: 512, steps: 30 });
    const status = await waitForJob(server, queued.jobId);
    expect(status.status).toBe("done");
    const selected = await server.ok("select_image", { key: status.images[0].key });
    expect(selected.metadata).toMatchObject({ scheduler: "euler_a", family: "sd15" });
    const png = readPng(readFileSync(fileURLToPath(selected.imageRef.downloadUrl)));
    expect([png.width, png.height]).toEqual([512, 512]);
  });
});
