import { execa } from "execa";
import { appendFileSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, inject, it } from "vitest";
import { SERVER_ENTRY } from "../helpers/paths.js";
import { readPng } from "../helpers/png.js";
import { makeTestHome, serverEnv, startServer, waitForJob, type RunningServer } from "../helpers/server.js";

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
    expect(demo.stdout).toMatch(/^ok {4}model demo_zimage: zimage at .*demo-models\/families\/zimage/m);
    expect(demo.stdout).toMatch(/^ok {4}runner: cpu float32; python [\d.]+, torch /m);
    expect(demo.stdout).toMatch(/^ok {4}loras: 2 LoRA\(s\) in .*demo-models\/loras$/m);
    expect(demo.stdout).not.toMatch(/FAIL/);

    // A single file without its own `config:` needs CLIP's vocabulary; here it is pointed somewhere empty.
    appendFileSync(home.modelsYaml, `shipped_config_file: ${path.join(inject("tinyModelsDir"), "single", "sd15.safetensors")}\n`);
    const noVocab = { KITTY_IMAGES_LOG_LEVEL: "warn", KITTY_IMAGES_CLIP_VOCAB: path.join(home.home, "no-vocab.txt.gz") };
    const plain = await execa(process.execPath, [SERVER_ENTRY, "doctor"], { env: serverEnv(home, noVocab), extendEnv: false, reject: false });
    expect(plain.exitCode).toBe(1);
    expect(plain.stdout).toMatch(/^FAIL {2}model missing_model: folder .* does not exist$/m);
    expect(plain.stdout).toMatch(/^ok {4}model tiny_sd15_file: sd15 at .*single\/sd15\.safetensors$/m);
    expect(plain.stdout).toMatch(/^FAIL {2}model shipped_config_file: a single-file checkpoint needs CLIP's tokenizer vocabulary at .*no-vocab\.txt\.gz: run npm run setup$/m);
    expect(plain.stdout).toMatch(/^ok {4}loras: 2 LoRA\(s\) in /m);
    // What to do about the missing folders, once, on its own line under the last of them.
    expect(plain.stdout).toMatch(/^FAIL {2}model missing_model: .*\n {6}fix: edit .*models\.yaml so each model names a folder or file on this machine, or set MODELS_YAML to a models\.yaml of your own; kitty-images doctor --demo/m);
    expect(plain.stdout.match(/fix:/g)).toHaveLength(1);
  });

  it("generate --demo --wait makes the newcomer's first image on the command line and says where it is", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const { MODELS_YAML: _ours, ...env } = serverEnv(home, { KITTY_IMAGES_LOG_LEVEL: "warn" });
    const run = await execa(process.execPath, [SERVER_ENTRY, "generate", "a red fox", "--demo", "--wait", "--steps", "2", "--width", "256", "--height", "256"], { env, extendEnv: false, reject: false });
    expect(run.exitCode, run.stderr).toBe(0);
    const job = JSON.parse(run.stdout);
    expect(job).toMatchObject({ status: "done", model: "demo_sd15" });
    expect(readPng(readFileSync(job.images[0].file))).toMatchObject({ width: 256, height: 256 });
  });

  it("serve --demo generates with the family defaults (SD 1.5: 512x512, 30 steps, euler_a)", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    server = await startServer(home, {}, ["--demo"]);
    const models = await server.ok("list_models", {});
    expect(models.models.map((model: { name: string; present: boolean }) => [model.name, model.present])).toEqual([
      ["demo_sd15", true],
      ["demo_sdxl", true],
      ["demo_zimage", true],
    ]);
    const queued = await server.ok("generate_image", { prompt: "newcomer's first image" });
    expect(queued).toMatchObject({ model: "demo_sd15", width: 512, height: 512, steps: 30 });
    const status = await waitForJob(server, queued.jobId);
    expect(status.status).toBe("done");
    const selected = await server.ok("select_image", { key: status.images[0].key });
    expect(selected.metadata).toMatchObject({ scheduler: "euler_a", family: "sd15" });
    const png = readPng(readFileSync(fileURLToPath(selected.imageRef.downloadUrl)));
    expect([png.width, png.height]).toEqual([512, 512]);

    // The modern family beside them, with Z-Image Turbo's recipe: 9 steps, no guidance.
    const modern = await server.ok("generate_image", { prompt: "a 2026 family", model: "demo_zimage" });
    expect(modern).toMatchObject({ model: "demo_zimage", width: 512, height: 512, steps: 9 });
    const modernDone = await waitForJob(server, modern.jobId);
    expect(modernDone, JSON.stringify(modernDone.error)).toMatchObject({ status: "done" });
    expect((await server.ok("select_image", { key: modernDone.images[0].key })).metadata).toMatchObject({ family: "zimage", request: { cfgScale: 0 } });
  });
});
