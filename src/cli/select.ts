import { connect } from "./connect.js";
import { printJson } from "./output.js";
import { parseCommand } from "./usage.js";

/** `kitty-images select N|KEY`: select_image's imageRef and key, JSON alone on stdout for the next tool in a pipe. */
export async function selectCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseCommand("select", args, { demo: { type: "boolean" } }, { min: 1, max: 1, name: "an image: its number in `kitty-images latest` (1 = newest) or its key" });
  const target = positionals[0]!;
  // A number counts from the newest image; anything else is a key (the tool says when it is not one).
  const query = /^\d+$/.test(target) ? { index: Number(target) } : { key: target };
  const connection = await connect({ runWorker: false, demo: values.demo ?? false });
  try {
    const selected = await connection.call<{ imageRef: { downloadUrl: string; storageUri: string }; key: string }>("select_image", query);
    printJson({ ...selected.imageRef, key: selected.key });
  } finally {
    await connection.close();
  }
}
