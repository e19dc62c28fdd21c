import { execa } from "execa";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { PROJECT_ROOT, RUNNER_PYTHON } from "./helpers/paths.js";

declare module "vitest" {
  export interface ProvidedContext {
    tinyModelsDir: string;
  }
}

/** Builds the tiny random-weight pipelines once per version of tiny_models.py, through the real save_pretrained. */
export default async function setup(project: TestProject): Promise<void> {
  const source = readFileSync(path.join(PROJECT_ROOT, "python/diffusers_runner/tiny_models.py"));
  const dir = path.join(PROJECT_ROOT, ".cache", `tiny-models-${createHash("sha256").update(source).digest("hex").slice(0, 12)}`);
  if (!existsSync(path.join(dir, "loras", "tiny_sdxl_detail.safetensors"))) {
    await execa(RUNNER_PYTHON, ["-m", "diffusers_runner.tiny_models", dir], {
      cwd: path.join(PROJECT_ROOT, "python"),
      env: { PYTHONPATH: path.join(PROJECT_ROOT, "python"), HF_HUB_OFFLINE: "1" },
    });
  }
  project.provide("tinyModelsDir", dir);
}
