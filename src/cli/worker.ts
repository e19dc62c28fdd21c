import { messageOf } from "../core/errors.js";
import { createApp, queueIsShared } from "../app/createApp.js";
import { loadSetup } from "./setup.js";
import { parseCommand, UsageError } from "./usage.js";

/**
 * `kitty-images worker`: a GPU host on the shared Postgres queue (KITTY_IMAGES_DATABASE_URL). It runs the engine,
 * takes one job at a time for the models it has on disk, stores to the shared storage, and has no door.
 */
export async function workerCommand(args: string[]): Promise<void> {
  parseCommand("worker", args, {}, { min: 0, max: 0, name: "" });
  const { config, log } = await loadSetup("server");
  if (!queueIsShared(config)) {
    throw new UsageError("kitty-images worker takes jobs from a shared Postgres queue: set KITTY_IMAGES_DATABASE_URL=postgres://… (one machine needs no worker: serve runs its own)");
  }
  const app = await createApp(config, log, { runsJobs: true, watchModels: true });
  let closing = false;
  const shutdown = async (reason: string) => {
    if (closing) return;
    closing = true;
    log.info({ reason }, "worker shutting down");
    await app.close().catch((error: unknown) => log.error({ error: messageOf(error) }, "error while shutting down"));
    process.exit(0);
  };
  process.on("SIGINT", () => void shutdown("SIGINT"));
  process.on("SIGTERM", () => void shutdown("SIGTERM"));
}
