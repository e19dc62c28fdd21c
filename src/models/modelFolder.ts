import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import { PIPELINE_FAMILIES, type PipelineFamily } from "../generation.js";

export interface ModelOnDisk {
  present: boolean;
  family: PipelineFamily | null;
  problem: string | null;
}

/** Reads the folder's model_index.json, as diffusers does, so users never have to declare the family. */
export function inspectModelFolder(folder: string): ModelOnDisk {
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
      : { present: true, family: null, problem: `${indexPath} names ${className}, which is not SD 1.5 or SDXL` };
  } catch (error) {
    return { present: false, family: null, problem: `${indexPath} is unreadable: ${(error as Error).message}` };
  }
}
