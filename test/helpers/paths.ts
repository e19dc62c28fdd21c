import path from "node:path";
import { fileURLToPath } from "node:url";

export const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const RUNNER_PYTHON = process.env.KITTY_IMAGES_PYTHON ?? path.join(PROJECT_ROOT, ".cache", "venv", "bin", "python");
export const SERVER_ENTRY = path.join(PROJECT_ROOT, "dist", "cli.js");
