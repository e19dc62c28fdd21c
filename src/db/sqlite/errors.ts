import { KittyError } from "../../core/errors.js";
import { BUSY_TIMEOUT_MS } from "./database.js";

/**
 * SQLite's "locked by another connection", once busy_timeout has run out (a backup tool, a `sqlite3` shell left
 * in a transaction), as an error a person can act on; null for any other error.
 */
export function databaseBusy(error: unknown, doing: string): KittyError | null {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== "string" || !/^SQLITE_(BUSY|LOCKED)/.test(code)) return null;
  return new KittyError(
    "database_busy",
    `${doing}: another process has held the job database locked for over ${BUSY_TIMEOUT_MS / 1000}s (${code}), so nothing was changed; try again in a moment, and look for a program holding kitty-images.sqlite open in a transaction`,
  );
}
