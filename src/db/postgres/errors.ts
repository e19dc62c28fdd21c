import { KittyError } from "../../core/errors.js";

const FROM_POSTGRES = Symbol("kitty-images: from the Postgres connection");

/** Marks an error as raised on the way to or from Postgres, so a network code on it means the queue's database. */
export function fromPostgres(error: unknown): unknown {
  if (error !== null && typeof error === "object" && !(FROM_POSTGRES in error)) Object.defineProperty(error, FROM_POSTGRES, { value: true });
  return error;
}

const NETWORK_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN"]);

/**
 * A call refused because Postgres is out of reach (restarting, shutting down, the network dropped), as a typed
 * error a caller can act on: wait and retry. A network code counts only on an error the pool marked (fromPostgres),
 * so S3 refusing a connection is not taken for it; anything else (a bug, a constraint) stays an internal error.
 */
export function postgresUnavailable(error: unknown, doing: string): KittyError | null {
  const { code } = (error ?? {}) as { code?: unknown };
  const message = error instanceof Error ? error.message : String(error);
  const marked = error !== null && typeof error === "object" && FROM_POSTGRES in error;
  const outage =
    // SQLSTATE 57P01-57P03: shutting down, crashed, starting; class 08: the connection failed; 53: out of
    // connections, memory or disk (53300: too many hosts' pools at once).
    (typeof code === "string" && (/^57P0[1-3]$/.test(code) || /^08/.test(code) || /^53/.test(code))) ||
    (marked && typeof code === "string" && NETWORK_CODES.has(code)) ||
    /^Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(message);
  if (!outage) return null;
  // A connection can drop after a write reached the server: say so, rather than promise nothing changed.
  return new KittyError(
    "database_unavailable",
    `${doing}: the job database (Postgres) is not answering (${message}). Try again in a few seconds (a generate_image whose answer was lost this way may have queued its job)`,
  );
}
