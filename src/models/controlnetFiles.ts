import { readFileSync } from "node:fs";
import path from "node:path";
import { CONTROL_TYPES, type ControlType, type ModelFamily } from "../core/generation.js";
import { nameInFolder, walkFolder } from "./folderWalk.js";

/**
 * A ControlNet in models.yaml's `controlnets` folder: a diffusers ControlNet folder (config.json and its weights),
 * named by its path there. The family comes from its config (SDXL's take the pooled text and size embedding,
 * `addition_embed_type: text_time`; SD 2's cross-attend at 1024, SD 1.5's at 768);
 * the kind of map it reads from its name (`sd15_canny`, `control_v11f1p_sd15_depth`), or "union" for a
 * ControlNet-Union, which reads every kind.
 */
export interface ControlNetEntry {
  name: string;
  path: string;
  family: ModelFamily | null;
  type: ControlType | "union" | null;
  problem?: string;
}

const TRANSFORMER_CONTROLNETS: Record<string, ModelFamily> = { FluxControlNetModel: "flux", ZImageControlNetModel: "zimage" };
/** Other words for a type, as ControlNet files are commonly named. */
const TYPE_WORDS: Record<string, ControlType> = { openpose: "pose", softedge: "lineart", hed: "scribble", mlsd: "lineart", normalbae: "normal" };

export function listControlNets(folder: string): ControlNetEntry[] {
  const found: ControlNetEntry[] = [];
  // A folder with a config.json is one ControlNet: not walked into.
  walkFolder(folder, (dir, names) => {
    if (!names.includes("config.json")) return false;
    found.push(describe(nameInFolder(folder, dir), dir));
    return true;
  });
  return found.filter((entry) => entry.name !== "").sort((a, b) => a.name.localeCompare(b.name));
}

function describe(name: string, dir: string): ControlNetEntry {
  let config: { _class_name?: string; cross_attention_dim?: number; addition_embed_type?: string | null };
  try {
    config = JSON.parse(readFileSync(path.join(dir, "config.json"), "utf8"));
  } catch (error) {
    return { name, path: dir, family: null, type: null, problem: `config.json cannot be read: ${(error as Error).message}` };
  }
  const className = config._class_name ?? "ControlNetModel";
  // The transformer families' ControlNets are classes of their own (FLUX.1's union ones, told by their modes, are
  // not wired yet).
  const ownFamily = TRANSFORMER_CONTROLNETS[className];
  if (ownFamily) {
    const type = typeInName(name);
    return type ? { name, path: dir, family: ownFamily, type } : { name, path: dir, family: ownFamily, type: null, problem: `its name says no control type: put one of ${CONTROL_TYPES.join(", ")} in the folder's name` };
  }
  if (className !== "ControlNetModel" && className !== "ControlNetUnionModel") {
    return { name, path: dir, family: null, type: null, problem: `a ${className}: the ControlNets run here are ControlNetModel, ControlNetUnionModel, ${Object.keys(TRANSFORMER_CONTROLNETS).join(", ")}` };
  }
  if (config.addition_embed_type !== "text_time" && config.cross_attention_dim === 1024) {
    return { name, path: dir, family: null, type: null, problem: "an SD 2 ControlNet (cross-attention width 1024): no SD 2 model runs here" };
  }
  const family: ModelFamily = config.addition_embed_type === "text_time" ? "sdxl" : "sd15";
  if (className === "ControlNetUnionModel") return { name, path: dir, family, type: "union" };
  const type = typeInName(name);
  return type ? { name, path: dir, family, type } : { name, path: dir, family, type: null, problem: `its name says no control type: put one of ${CONTROL_TYPES.join(", ")} in the folder's name` };
}

function typeInName(name: string): ControlType | null {
  const words = name.toLowerCase().split(/[^a-z]+/);
  for (const word of words) {
    if ((CONTROL_TYPES as readonly string[]).includes(word)) return word as ControlType;
    if (TYPE_WORDS[word]) return TYPE_WORDS[word];
  }
  return null;
}
