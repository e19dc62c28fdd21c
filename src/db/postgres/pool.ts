import pg from "pg";
import { messageOf } from "../../core/errors.js";
import type { Logger } from "../../core/log.js";
import { JobTakenOver } from "../../queue/job.js";
import { fromPostgres } from "./errors.js";

/**
 * A connection pool that outlives Postgres restarts. Idle connections die with the server; without a listener
 * their error would crash the process. pg-pool can also see a second error on a connection it is already closing,
 * after it let go of it: every connection gets its own listener, so neither can be unhandled. The next query opens
 * a fresh connection; the store's callers retry what failed.
 */
export function createPgPool(connectionString: string, log: Logger, max = 8): pg.Pool {
  const pool = new pg.Pool({ connectionString, max, connectionTimeoutMillis: 5_000 });
  pool.on("error", (error) => log.warn({ error: messageOf(error) }, "a pooled Postgres connection dropped"));
  pool.on("connect", (client) => client.on("error", () => undefined));
  // Every failure on the way to Postgres is marked, so the doors can tell "the database is down" from any other
  // ECONNRESET (S3's) and answer database_unavailable.
  const query = pool.query.bind(pool) as (...args: unknown[]) => unknown;
  pool.query = ((...args: unknown[]) => {
    const result = query(...args);
    return result instanceof Promise ? result.catch((error: unknown) => Promise.reject(fromPostgres(error))) : result;
  }) as typeof pool.query;
  const connect = pool.connect.bind(pool) as (...args: unknown[]) => unknown;
  pool.connect = ((...args: unknown[]) => {
    const result = connect(...args);
    return result instanceof Promise ? result.catch((error: unknown) => Promise.reject(fromPostgres(error))) : result;
  }) as typeof pool.connect;
  return pool;
}

/** Runs `work` in one transaction on one connection; a connection that failed mid-transaction is closed. */
export async function inTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let failed: unknown;
  try {
    await client.query("BEGIN");
    const result = await work(client);
    await client.query("COMMIT");
    return result;
  } catch (error) {
    failed = error;
    await client.query("ROLLBACK").catch(() => undefined);
    throw fromPostgres(error);
  } finally {
    // A connection that failed mid-transaction is closed rather than handed to the next caller.
    client.release(failed instanceof Error && !(failed instanceof JobTakenOver) ? failed : undefined);
  }
}
