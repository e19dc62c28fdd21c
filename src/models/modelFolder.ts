import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { PipelineFamily } from "../core/generation.js";
import { PIPELINE_FAMILIES } from "./families.js";
import { HUB_PREFIX } from "./hubCache.js";
import { readSafetensorsHeader } from "./loraFiles.js";

export interface ModelOnDisk {
  present: boolean;
  family: PipelineFamily | null;
  problem: string | null;
  /** There, but of a kind this server cannot run (a pipeline class not in the family table): refused before queueing. */
  unsupported?: boolean;
}

const SINGLE_FILE = /\.(safetensors|ckpt|pt)$/i;

/** A single-file checkpoint rather than a diffusers folder (python/diffusers_runner/single_file.py: SUFFIXES). */
export function isSingleFile(modelPath: string): boolean {
  return SINGLE_FILE.test(modelPath);
}

/**
 * Reads the folder's model_index.json, as diffusers does, so users never have to declare the family. A single-file
 * checkpoint's family comes from its tensor names (Stability AI's layout): the runner reads them the same way.
 */
export function inspectModelFolder(folder: string): ModelOnDisk {
  if (folder.startsWith(HUB_PREFIX)) {
    // catalog.ts turns a cached repo into its snapshot folder: one still written hf: is not in the cache.
    const repo = folder.slice(HUB_PREFIX.length);
    return { present: false, family: null, problem: `Hugging Face repo ${repo} is not in the local cache (HF_HUB_CACHE, else HF_HOME/hub); download it once: hf download ${repo}` };
  }
  if (isSingleFile(folder)) return inspectCheckpoint(folder);
  const indexPath = path.join(folder, "model_index.json");
  if (!existsSync(folder)) return { present: false, family: null, problem: `folder ${folder} does not exist` };
  if (!existsSync(indexPath)) {
    return { present: false, family: null, problem: `${folder} has no model_index.json (not a diffusers folder)` };
  }
  try {
    const className = (JSON.parse(readFileSync(indexPath, "utf8")) as { _class_name?: string })._class_name ?? "";
    const family = PIPELINE_FAMILIES[className] ?? null;
    return family
      ? { present: true, family, problem: null }
      : {
          present: true,
          family: null,
          unsupported: true,
          problem: `${indexPath} names ${className}, which this server does not run (it runs: ${Object.keys(PIPELINE_FAMILIES).filter((name) => PIPELINE_FAMILIES[name] !== "sdxl_refiner").join(", ")})`,
        };
  } catch (error) {
    return { present: false, family: null, problem: `${indexPath} is unreadable: ${(error as Error).message}` };
  }
}

/**
 * A models.yaml entry on disk: its folder or checkpoint, or a transformer-only (or UNet-only) single file with the
 * `base:` folder that supplies the rest (text encoders, VAE, scheduler): the family is the base's.
 */
export function inspectEntry(entry: { path: string; basePath?: string | null }): ModelOnDisk {
  if (!entry.basePath) return inspectModelFolder(entry.path);
  if (!existsSync(entry.path)) return { present: false, family: null, problem: `file ${entry.path} does not exist` };
  const base = inspectModelFolder(entry.basePath);
  if (!base.present || base.unsupported) return { ...base, problem: `its base: ${base.problem}` };
  if (base.family === "sdxl_refiner") return { present: true, family: null, unsupported: true, problem: `its base ${entry.basePath} is an SDXL refiner, not a model` };
  return base;
}

function inspectCheckpoint(file: string): ModelOnDisk {
  if (!existsSync(file)) return { present: false, family: null, problem: `checkpoint file ${file} does not exist` };
  // A pickle checkpoint cannot be read without torch: its family is found when the runner loads it (or declared).
  if (!/\.safetensors$/i.test(file)) return { present: true, family: null, problem: null };
  let names: string[];
  try {
    names = Object.keys(readSafetensorsHeader(file));
  } catch (error) {
    return { present: false, family: null, problem: `${file} is not a readable safetensors file: ${(error as Error).message}` };
  }
  const has = (prefix: string) => names.some((name) => name.startsWith(prefix));
  if (has("conditioner.embedders.1.")) return { present: true, family: "sdxl", problem: null };
  if (has("conditioner.embedders.0.model.")) return { present: true, family: "sdxl_refiner", problem: null };
  if (has("cond_stage_model.transformer.")) return { present: true, family: "sd15", problem: null };
  const what = has("cond_stage_model.model.") ? "a Stable Diffusion 2.x checkpoint" : "not a checkpoint in Stability AI's layout";
  return { present: true, family: null, problem: `${file} is ${what}; supported: SD 1.5, SDXL base, SDXL refiner` };
}
