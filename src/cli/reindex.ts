import { openDatabase } from "../db.js";
import { JobStore } from "../queue/jobStore.js";
import { reindex } from "../reindex.js";
import { createStore } from "../server.js";
import { ImageIndex } from "../storage/imageIndex.js";
import { printJson } from "./output.js";
import { loadSetup } from "./setup.js";
import { parseCommand } from "./usage.js";

/**
 * `kitty-images reindex`: rebuilds the image index from storage (S3 or the local folder), e.g. after the SQLite
 * file was lost. Prints what it found; exit code 1 when some image could not be read (the log names it).
 */
export async function reindexCommand(args: string[]): Promise<void> {
  parseCommand("reindex", args, {}, { min: 0, max: 0, name: "" });
  const { config, log } = await loadSetup("person");
  const db = openDatabase(config.databasePath);
  try {
    const store = createStore(config);
    await store.ensureReady();
    const summary = await reindex({ db, jobs: new JobStore(db), index: new ImageIndex(db), store, keyPrefix: config.keyPrefix, log });
    printJson(summary);
    if (summary.unreadable > 0) process.exitCode = 1;
  } finally {
    db.close();
  }
}
