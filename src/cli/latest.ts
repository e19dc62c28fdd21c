import { connect } from "./connect.js";
import { formatTable, printJson } from "./output.js";
import { numberFlag, parseCommand } from "./usage.js";

interface LatestImages {
  images: Array<{ index: number; key: string; createdAt: string; prompt: string; model: string; width: number; height: number; seed: number }>;
  nextCursor: string | null;
}

/** `kitty-images latest [--limit N]`: list_latest_images; a table for a person, JSON for a pipe. */
export async function latestCommand(args: string[]): Promise<void> {
  const { values } = parseCommand("latest", args, { limit: { type: "string" }, demo: { type: "boolean" } }, { min: 0, max: 0, name: "" });
  const limit = numberFlag("limit", values.limit);
  const connection = await connect({ runWorker: false, demo: values.demo ?? false });
  try {
    const latest = await connection.call<LatestImages>("list_latest_images", limit === undefined ? {} : { limit });
    if (!process.stdout.isTTY) return printJson(latest);
    if (latest.images.length === 0) {
      process.stdout.write(`no images yet: kitty-images generate "a prompt" --wait makes one\n`);
      return;
    }
    const rows = latest.images.map((image) => [
      String(image.index),
      image.createdAt.replace("T", " ").replace(/\.\d+Z$|Z$/, ""),
      image.model,
      `${image.width}x${image.height}`,
      String(image.seed),
      image.key,
      image.prompt.length > 50 ? `${image.prompt.slice(0, 49)}…` : image.prompt,
    ]);
    process.stdout.write(`${formatTable(["#", "created (UTC)", "model", "size", "seed", "key", "prompt"], rows)}\n`);
    if (latest.nextCursor) process.stdout.write(`(more: kitty-images latest --limit ${Math.min(200, rows.length * 2)})\n`);
  } finally {
    await connection.close();
  }
}
