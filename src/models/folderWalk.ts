import { readdirSync, statSync } from "node:fs";
import path from "node:path";

/**
 * Walks a models.yaml folder (LoRAs, ControlNets, upscalers): `visit` sees each folder's entries, dot-names left
 * out, and returns true where that folder is an entry of its own, not to be walked into; subfolders are walked a
 * few levels deep. An unreadable folder is skipped, as a missing one is.
 */
export function walkFolder(folder: string, visit: (dir: string, names: string[]) => boolean | void, maxDepth = 3): void {
  const walk = (dir: string, depth: number) => {
    let names: string[];
    try {
      names = readdirSync(dir).filter((name) => !name.startsWith("."));
    } catch {
      return;
    }
    if (visit(dir, names)) return;
    for (const name of names) {
      const full = path.join(dir, name);
      if (depth < maxDepth && isDirectory(full)) walk(full, depth + 1);
    }
  };
  walk(folder, 1);
}

/** A path under the folder as models.yaml names it: `/`-separated, relative to the folder. */
export function nameInFolder(folder: string, full: string): string {
  return path.relative(folder, full).split(path.sep).join("/");
}

function isDirectory(file: string): boolean {
  try {
    return statSync(file).isDirectory();
  } catch {
    return false;
  }
}
