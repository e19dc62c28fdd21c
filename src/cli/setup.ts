import { chmodSync, existsSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { loadConfig, type Config } from "../config.js";
import { createLogger, type Logger } from "../core/log.js";

export interface Setup {
  config: Config;
  log: Logger;
}

/**
 * `server`: JSON logs at the configured level, as a supervisor collects them. `person`: a command someone runs
 * at a prompt shows only its own output, so logs are at warn unless KITTY_IMAGES_LOG_LEVEL asks for more, and
 * readable when stderr is a terminal.
 */
export async function loadSetup(audience: "server" | "person", { demo = false } = {}): Promise<Setup> {
  const defaultLogLevel = audience === "person" ? "warn" : "info";
  const config = loadConfig(process.env, { defaultLogLevel });
  keepPrivate(config.home);
  // A server a person started at a terminal logs readable lines there too; under a client or a supervisor, JSON.
  const log = createLogger(config.logLevel, { readable: process.stderr.isTTY === true && (audience === "person" || process.stdin.isTTY === true || process.stdout.isTTY === true) });
  if (!demo) return { config, log };
  return { config: loadConfig(process.env, { defaultLogLevel, modelsYaml: await prepareDemoModels(config, log, audience) }), log };
}

/**
 * The data dir holds prompts, images and the link-signing key: its owner's alone. The umask covers every file
 * this process and the runner it starts create (SQLite's WAL and SHM files, PNGs, sidecars); the chmod closes a
 * data dir an older version made world-readable.
 */
function keepPrivate(home: string): void {
  process.umask(0o077);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const { mode, uid } = statSync(home);
  if ((mode & 0o077) !== 0 && uid === process.getuid?.()) chmodSync(home, 0o700);
}

/** Builds the tiny random-weight pipelines once and writes a models.yaml that points at them. */
async function prepareDemoModels(config: Config, log: Logger, audience: "server" | "person"): Promise<string> {
  const folder = path.join(config.home, "demo-models");
  const yamlPath = path.join(folder, "models.yaml");
  // The modern family is built last: with it there, the whole set is.
  if (!existsSync(path.join(folder, "families", "zimage", "model_index.json"))) {
    log.info({ folder }, "building tiny random-weight demo models (images will be noise)");
    mkdirSync(folder, { recursive: true });
    const { execa } = await import("execa");
    const python = {
      cwd: config.runner.packageDir,
      env: { PYTHONPATH: config.runner.packageDir, HF_HUB_OFFLINE: "1" },
      stdout: "ignore" as const,
      // A person sees Python's chatter only when the build fails (execa's error carries it).
      stderr: audience === "person" ? ("pipe" as const) : ("inherit" as const),
    };
    await execa(config.runner.python, ["-m", "diffusers_runner.tiny_models", folder], python);
    await execa(config.runner.python, ["-m", "diffusers_runner.tiny_families", path.join(folder, "families"), "zimage"], python);
  }
  writeFileSync(
    yamlPath,
    [
      "# Demo models: tiny pipelines with random weights. They exercise the real path; their images are noise.",
      `demo_sd15: ${path.join(folder, "sd15")}`,
      "demo_sdxl:",
      `  path: ${path.join(folder, "sdxl")}`,
      `  refiner: ${path.join(folder, "sdxl_refiner")}`,
      "  description: tiny random-weight SDXL (noise images)",
      "  defaults: {width: 512, height: 512, steps: 8}",
      "demo_zimage:",
      `  path: ${path.join(folder, "families", "zimage")}`,
      "  description: tiny random-weight Z-Image, a 2026 family (noise images)",
      "  defaults: {width: 512, height: 512}",
      `loras: ${path.join(folder, "loras")}`,
      "",
    ].join("\n"),
  );
  return yamlPath;
}
