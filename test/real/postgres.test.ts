import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startPostgres, whyNoPostgres, type PostgresServer } from "../helpers/postgres.js";

/**
 * The throwaway Postgres the scale-out tests stand on (scripts/setup-postgres.sh installs Debian's postgresql):
 * it answers, and a restart or a kill -9 of the postmaster mid-run keeps every committed row.
 */
const noPostgres = whyNoPostgres();

async function connect(server: PostgresServer): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: server.url });
  client.on("error", () => {}); // the server going away under an idle client is what these tests do on purpose
  await client.connect();
  return client;
}

async function rowCount(server: PostgresServer): Promise<number> {
  const client = await connect(server);
  try {
    return Number((await client.query<{ total: string }>("SELECT count(*) AS total FROM jobs")).rows[0].total);
  } finally {
    await client.end();
  }
}

describe.skipIf(noPostgres !== null)("a throwaway Postgres from the test helper", () => {
  let server: PostgresServer;

  beforeAll(async () => {
    server = await startPostgres();
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("answers on loopback as a superuser, with fsync off", async () => {
    const client = await connect(server);
    const { rows } = await client.query("SELECT version(), current_user, current_database(), current_setting('fsync') AS fsync");
    await client.end();
    expect(server.url).toBe(`postgres://kitty@127.0.0.1:${server.port}/kitty_test`);
    expect(rows[0]).toMatchObject({ version: expect.stringMatching(/^PostgreSQL \d+/), current_user: "kitty", current_database: "kitty_test", fsync: "off" });
  });

  it("keeps its data over restart(), which ends open connections, and takes new ones after it", async () => {
    const before = await connect(server);
    await before.query("CREATE TABLE jobs (job_id serial PRIMARY KEY, prompt text NOT NULL)");
    await before.query("INSERT INTO jobs (prompt) SELECT 'a cat ' || n FROM generate_series(1, 100) AS n");
    const pidBefore = server.pid;

    await server.restart();

    expect(server.pid).not.toBe(pidBefore);
    await expect(before.query("SELECT 1")).rejects.toThrow();
    await before.end().catch(() => {});
    expect(await rowCount(server)).toBe(100);
    const after = await connect(server);
    await after.query("INSERT INTO jobs (prompt) VALUES ('a dog')");
    await after.end();
    expect(await rowCount(server)).toBe(101);
  });

  it("loses no acknowledged commit when the postmaster is killed with SIGKILL", async () => {
    const client = await connect(server);
    // One commit per row, the last acknowledged a moment before the kill: none may be lost to crash recovery.
    for (let n = 0; n < 200; n++) await client.query("INSERT INTO jobs (prompt) VALUES ($1)", [`a bird ${n}`]);

    await server.kill();
    await expect(client.query("SELECT 1")).rejects.toThrow();
    await client.end().catch(() => {});
    await server.restart();

    expect(await rowCount(server)).toBe(301);
  });
});

describe.runIf(noPostgres !== null)("a throwaway Postgres from the test helper", () => {
  it.skip(noPostgres ?? "", () => {});
});
