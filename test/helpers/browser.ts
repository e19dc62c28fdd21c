import { existsSync } from "node:fs";
import path from "node:path";

/** Where the project's setup puts Chromium (Debian's package), or one named by KITTY_IMAGES_CHROMIUM; null when none is installed. */
export function findChromium(): string | null {
  const candidates = [
    process.env.KITTY_IMAGES_CHROMIUM,
    "/usr/bin/chromium",
    "/usr/bin/chromium-browser",
    "/usr/bin/google-chrome",
    ...(process.env.PATH ?? "").split(path.delimiter).map((dir) => path.join(dir, "chromium")),
  ];
  return candidates.find((candidate): candidate is string => !!candidate && existsSync(candidate)) ?? null;
}
