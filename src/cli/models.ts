import { loadConfig } from "../config.js";
import { parseCommand } from "./usage.js";

/** `kitty-images models`: the catalog as the server reads it, from models.yaml on this machine. */
export async function modelsCommand(args: string[]): Promise<void> {
  parseCommand("models", args, {}, { min: 0, max: 0, name: "" });
  const config = loadConfig();
  process.stdout.write(`${JSON.stringify({ source: config.models.sourcePath, default: config.models.defaultModel, models: config.models.entries }, null, 2)}\n`);
}
