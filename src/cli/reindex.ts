import { openQueueDatabase } from "../app/createApp.js";
import { createStore } from "../app/parts.js";
import { reindex } from "../queue/reindex.js";
import { printJson } from "./output.js";
import { loadSetup } from "./setup.js";
import { parseCommand } from "./usage.js";

/**
 * `kitty-images reindex`: rebuilds the image index from storage (S3 or the local folder), e.g. after the SQLite
 * file was lost; on a scale-out queue, the shared Postgres index. Prints what it found; exit code 1 when some image
 * could not be read (the log names it).
 */
export async function reindexCommand(args: string[]): Promise<void> {
  parseCommand("reindex", args, {}, { min: 0, max: 0, name: "" });
  const { config, log } = await loadSetup("person");
  const { jobs, images, uploads, close } = await openQueueDatabase(config, log);
  try {
    const store = createStore(config);
    await store.ensureReady();
    const summary = await reindex({ jobs, images, store, keyPrefix: config.keyPrefix, uploads: { index: uploads, prefix: config.uploadPrefix }, log });
    printJson(summary);
    if (summary.unreadable > 0) process.exitCode = 1;
  } finally {
    await close();
  }
}
