import { execa } from "execa";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { TestProject } from "vitest/node";
import { PROJECT_ROOT, RUNNER_PYTHON } from "./helpers/paths.js";

declare module "vitest" {
  export interface ProvidedContext {
    tinyModelsDir: string;
  }
}

/**
 * Builds the tiny random-weight pipelines once per version of tiny_models.py, through the real save_pretrained,
 * and the SD 1.5 one again as a single-file checkpoint in Stability AI's layout (single/sd15.safetensors, with
 * single/sd15-config holding the folder's configs and tokenizer without its weights), tiny ControlNets under
 * controlnets/, and one tiny pipeline per modern family under families/ (python/diffusers_runner/tiny_families.py).
 */
export default async function setup(project: TestProject): Promise<void> {
  const hash = createHash("sha256");
  for (const file of ["python/diffusers_runner/tiny_models.py", "python/diffusers_runner/tiny_families.py", "python/diffusers_runner/tiny_controlnets.py", "python/diffusers_runner/tiny_upscalers.py", "python/tests/single_file_checkpoint.py"]) hash.update(readFileSync(path.join(PROJECT_ROOT, file)));
  const dir = path.join(PROJECT_ROOT, ".cache", `tiny-models-${hash.digest("hex").slice(0, 12)}`);
  const python = { cwd: path.join(PROJECT_ROOT, "python"), env: { PYTHONPATH: path.join(PROJECT_ROOT, "python"), HF_HUB_OFFLINE: "1" } };
  if (!existsSync(path.join(dir, "loras", "tiny_sdxl_detail.safetensors"))) {
    await execa(RUNNER_PYTHON, ["-m", "diffusers_runner.tiny_models", dir], python);
  }
  if (!existsSync(path.join(dir, "single", "sd15.safetensors"))) {
    const script = [
      "import shutil, sys",
      "from pathlib import Path",
      "from tests.single_file_checkpoint import write_single_file",
      "models, single = Path(sys.argv[1]), Path(sys.argv[1]) / 'single'",
      "shutil.copytree(models / 'sd15', single / 'sd15-config', ignore=lambda d, names: [n for n in names if n.endswith('.safetensors')])",
      "write_single_file(models / 'sd15', single / 'sd15.safetensors.partial')",
      "(single / 'sd15.safetensors.partial').rename(single / 'sd15.safetensors')",
    ].join("\n");
    await execa(RUNNER_PYTHON, ["-c", script, dir], python);
  }
  // Tiny ControlNets made from the tiny UNets (sd15_canny, sd15_depth, sdxl_canny, sdxl_union): controlnets/.
  if (!existsSync(path.join(dir, "controlnets", ".built"))) {
    await execa(RUNNER_PYTHON, ["-m", "diffusers_runner.tiny_controlnets", dir, path.join(dir, "controlnets")], python);
    writeFileSync(path.join(dir, "controlnets", ".built"), "");
  }
  // Tiny ESRGAN upscalers (tiny_x4.safetensors, tiny-2x.pth): upscalers/.
  if (!existsSync(path.join(dir, "upscalers", "tiny-2x.pth"))) {
    await execa(RUNNER_PYTHON, ["-m", "diffusers_runner.tiny_upscalers", path.join(dir, "upscalers")], python);
  }
  // One tiny pipeline per modern family (FLUX.1, Z-Image, ...): families/<family>, built last, so its marker means all.
  if (!existsSync(path.join(dir, "families", ".built"))) {
    await execa(RUNNER_PYTHON, ["-m", "diffusers_runner.tiny_families", path.join(dir, "families")], python);
    writeFileSync(path.join(dir, "families", ".built"), "");
  }
  project.provide("tinyModelsDir", dir);
}
