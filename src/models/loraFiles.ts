import { closeSync, openSync, readSync } from "node:fs";
import path from "node:path";
import type { ModelFamily } from "../core/generation.js";
import { nameInFolder, walkFolder } from "./folderWalk.js";

/** A LoRA file in models.yaml's `loras` folder: its name is its path there without `.safetensors`. */
export interface LoraEntry {
  name: string;
  path: string;
  /** The family its tensors were trained for; null when they do not say (the runner then finds out on load). */
  family: ModelFamily | null;
  problem?: string;
}

// A safetensors header is JSON of tensor names and shapes; real LoRAs stay far below this.
const MAX_HEADER_BYTES = 64 * 1024 * 1024;

/** Every `.safetensors` file under the folder (subfolders too, a few levels deep), sorted by name. */
export function listLoras(folder: string): LoraEntry[] {
  const found: LoraEntry[] = [];
  walkFolder(folder, (dir, names) => {
    for (const name of names.filter((each) => each.endsWith(".safetensors"))) {
      const full = path.join(dir, name);
      found.push({ name: nameInFolder(folder, full).slice(0, -".safetensors".length), path: full, ...loraFamily(full) });
    }
  });
  return found.sort((a, b) => a.name.localeCompare(b.name));
}

/** Reads only the file's header: the tensor names and shapes say which family a LoRA is for. */
export function loraFamily(file: string): { family: ModelFamily | null; problem?: string } {
  let header: Record<string, { shape?: number[] }>;
  try {
    header = readSafetensorsHeader(file);
  } catch (error) {
    return { family: null, problem: `not a readable safetensors file: ${(error as Error).message}` };
  }
  return { family: familyOfTensors(header) };
}

export function readSafetensorsHeader(file: string): Record<string, { shape?: number[] }> {
  const fd = openSync(file, "r");
  try {
    const lengthBytes = Buffer.alloc(8);
    if (readSync(fd, lengthBytes, 0, 8, 0) !== 8) throw new Error("shorter than a safetensors header");
    const length = Number(lengthBytes.readBigUInt64LE());
    if (length <= 0 || length > MAX_HEADER_BYTES) throw new Error(`header length ${length} is not plausible`);
    const json = Buffer.alloc(length);
    if (readSync(fd, json, 0, length, 8) !== length) throw new Error("header cut short");
    return JSON.parse(json.toString("utf8")) as Record<string, { shape?: number[] }>;
  } finally {
    closeSync(fd);
  }
}

/**
 * SD LoRAs only: SDXL LoRAs touch the second text encoder or SDXL's deeper transformer stacks (SD 1.5 has one transformer block
 * per attention, SDXL up to ten); the cross-attention key width is 2048 for SDXL and 768 for SD 1.5. Names come in
 * diffusers/PEFT form (`transformer_blocks.1.`) and kohya form (`transformer_blocks_1_`).
 */
export function familyOfTensors(header: Record<string, { shape?: number[] }>): ModelFamily | null {
  const names = Object.keys(header).filter((name) => name !== "__metadata__");
  // A transformer family's LoRA (diffusers' `transformer.` keys, BFL's `diffusion_model.`, kohya's double/single
  // blocks): FLUX.1, Chroma and their successors share block names, so the runner tells which on load.
  if (names.some((name) => /^(transformer|diffusion_model)\.|lora_unet_(double|single)_blocks|^(double|single)_blocks\./.test(name))) return null;
  if (names.some((name) => /text_encoder_2|lora_te2_|transformer_blocks[._][1-9]/.test(name))) return "sdxl";
  for (const name of names) {
    if (!/attn2[._]to_k[._].*(lora_down|lora_A|lora\.down)/.test(name)) continue;
    const width = header[name]?.shape?.[1];
    if (width === 2048) return "sdxl";
    if (width === 768) return "sd15";
    // SD 2.x (1024): a family the runner does not load.
    if (width === 1024) return null;
  }
  return names.some((name) => /attn2[._]to_k/.test(name)) ? "sd15" : null;
}
