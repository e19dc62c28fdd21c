import { KittyError } from "../errors.js";

/**
 * A call refused because Postgres is out of reach (restarting, shutting down, the network dropped), as a typed
 * error a caller can act on: wait and retry. `port`: the queue's, so a refused connection to S3 is not taken for it.
 * Anything else (a bug, a constraint) is not this and stays an internal error.
 */
export function postgresUnavailable(error: unknown, doing: string, port: number): KittyError | null {
  const { code, port: refusedPort } = (error ?? {}) as { code?: unknown; port?: unknown };
  const message = error instanceof Error ? error.message : String(error);
  const outage =
    // SQLSTATE 57P01-57P03: shutting down, crashed, starting; class 08: the connection failed.
    (typeof code === "string" && (/^57P0[1-3]$/.test(code) || /^08/.test(code))) ||
    (code === "ECONNREFUSED" && refusedPort === port) ||
    /^Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error/.test(message);
  if (!outage) return null;
  return new KittyError("database_unavailable", `${doing}: the job database (Postgres) is not answering (${message}); nothing was changed. Try again in a few seconds`);
}
