import { loadClientConfig, loadConfig } from "../config.js";
import { connect } from "./connect.js";
import { printJson } from "./output.js";
import { parseCommand } from "./usage.js";

/**
 * `kitty-images models`: the catalog as the server reads it. With KITTY_IMAGES_URL, the running server's own
 * answer (list_models: families, what is on disk, defaults); otherwise models.yaml on this machine.
 */
export async function modelsCommand(args: string[]): Promise<void> {
  const { values } = parseCommand("models", args, { demo: { type: "boolean" } }, { min: 0, max: 0, name: "" });
  if (loadClientConfig().mcpEndpoint || values.demo) {
    const connection = await connect({ runWorker: false, demo: values.demo ?? false });
    try {
      return printJson(await connection.call("list_models", {}));
    } finally {
      await connection.close();
    }
  }
  const config = loadConfig();
  printJson({ source: config.models.sourcePath, default: config.models.defaultModel, models: config.models.entries });
}
