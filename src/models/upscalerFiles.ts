import path from "node:path";
import { nameInFolder, walkFolder } from "./folderWalk.js";
import { readSafetensorsHeader } from "./loraFiles.js";

/**
 * An ESRGAN-family upscaler in models.yaml's `upscalers` folder: a `.pth` or `.safetensors` RRDBNet (Real-ESRGAN,
 * 4x-UltraSharp, ...), named by its path there without the extension. Its scale is read from a safetensors
 * header (the first convolution takes 3 channels at 4x, 12 at 2x: the input pixel-unshuffled), else from the name
 * (`x4`, `4x`); the runner reads it from the weights either way.
 */
export interface UpscalerEntry {
  name: string;
  path: string;
  scale: number | null;
  problem?: string;
}

const SCALE_BY_CHANNELS: Record<number, number> = { 3: 4, 12: 2, 48: 1 };

export function listUpscalers(folder: string): UpscalerEntry[] {
  const found: UpscalerEntry[] = [];
  walkFolder(folder, (dir, names) => {
    for (const name of names) {
      const extension = /\.(pth|safetensors)$/.exec(name)?.[0];
      if (extension) found.push(describe(nameInFolder(folder, path.join(dir, name)).slice(0, -extension.length), path.join(dir, name)));
    }
  });
  return found.sort((a, b) => a.name.localeCompare(b.name));
}

function describe(name: string, file: string): UpscalerEntry {
  if (file.endsWith(".safetensors")) {
    try {
      const header = readSafetensorsHeader(file);
      const first = header["conv_first.weight"] ?? header["model.0.weight"];
      if (!first?.shape) return { name, path: file, scale: null, problem: "not an ESRGAN (RRDBNet): it has neither conv_first nor model.0" };
      return { name, path: file, scale: SCALE_BY_CHANNELS[first.shape[1] ?? 0] ?? null };
    } catch (error) {
      return { name, path: file, scale: null, problem: `not a readable safetensors file: ${(error as Error).message}` };
    }
  }
  const said = /(?:^|[^a-z0-9])(?:x([124])|([124])x)(?:[^a-z0-9]|$)/i.exec(name);
  return { name, path: file, scale: said ? Number(said[1] ?? said[2]) : null };
}
