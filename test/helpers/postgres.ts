import { execa, execaSync, type ResultPromise } from "execa";
import { existsSync, readdirSync } from "node:fs";
import { chown, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import pg from "pg";
import { freePort } from "./minio.js";
import { waitUntil } from "./waitUntil.js";

export interface PostgresServer {
  /** postgres://kitty@127.0.0.1:<port>/kitty_test: a superuser, trust auth, loopback only. */
  url: string;
  port: number;
  /** The postmaster's pid (a new one after restart()). */
  readonly pid: number;
  /** Fast shutdown, then the data folder is removed. */
  stop(): Promise<void>;
  /** Fast shutdown and start again on the same port and data folder: a Postgres restarted mid-run. */
  restart(): Promise<void>;
  /**
   * SIGKILL to the postmaster alone; resolves when its backends have noticed and exited too (one busy in a query
   * finishes that query first). restart() then runs crash recovery.
   */
  kill(): Promise<void>;
}

const SUPERUSER = "kitty";
const DATABASE = "kitty_test";
// initdb and postgres refuse to run as root; as root the cluster belongs to Debian's `postgres` user instead.
const RUN_AS_WHEN_ROOT = "postgres";

/** The folder holding postgres and initdb: KITTY_IMAGES_POSTGRES_BIN, else Debian's newest /usr/lib/postgresql/<major>/bin. */
export function findPostgresBin(): string | null {
  const debian = existsSync("/usr/lib/postgresql")
    ? readdirSync("/usr/lib/postgresql").filter((major) => /^\d+$/.test(major)).sort((a, b) => Number(b) - Number(a)).map((major) => `/usr/lib/postgresql/${major}/bin`)
    : [];
  const candidates = [process.env.KITTY_IMAGES_POSTGRES_BIN, ...debian];
  return candidates.find((dir): dir is string => !!dir && existsSync(path.join(dir, "postgres")) && existsSync(path.join(dir, "initdb"))) ?? null;
}

/** Why the Postgres tests cannot run here, or null when they can. */
export function whyNoPostgres(): string | null {
  if (!findPostgresBin()) return "needs Postgres: install Debian's postgresql (npm test does it where it may use apt-get) or set KITTY_IMAGES_POSTGRES_BIN";
  if (process.getuid?.() === 0 && !unprivilegedUser()) return `runs as root, and Postgres will not: needs a '${RUN_AS_WHEN_ROOT}' user to run it as (Debian's postgresql package creates one)`;
  return null;
}

/** { uid, gid } to spawn initdb and postgres with when this process is root; undefined when it is not. */
function unprivilegedUser(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const id = (flag: string) => Number(execaSync("id", [flag, RUN_AS_WHEN_ROOT], { reject: false }).stdout || NaN);
  const [uid, gid] = [id("-u"), id("-g")];
  return Number.isInteger(uid) && uid > 0 && Number.isInteger(gid) ? { uid, gid } : undefined;
}

async function acceptsConnections(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
  client.on("error", () => {}); // a refused or reset connection is "not yet", not a crash of the test process
  try {
    await client.connect();
    await client.query("SELECT 1");
    return true;
  } catch {
    return false; // not listening yet, or still starting up / recovering
  } finally {
    await client.end().catch(() => {});
  }
}

/**
 * A throwaway Postgres cluster on a free loopback port, in a temp folder, tuned for tests (no fsync), with one
 * database. As root, initdb and the server run as the `postgres` user (spawned with its uid/gid, so the pid is the
 * postmaster's own), in a folder that user owns.
 */
export async function startPostgres(): Promise<PostgresServer> {
  const binDir = findPostgresBin();
  if (!binDir) throw new Error("no Postgres binaries: run scripts/setup-postgres.sh or set KITTY_IMAGES_POSTGRES_BIN");
  const owner = unprivilegedUser();
  if (process.getuid?.() === 0 && !owner) throw new Error(`running as root and there is no '${RUN_AS_WHEN_ROOT}' user to run Postgres as`);

  // Short path: the socket (<dir>/.s.PGSQL.<port>) must fit in 107 bytes.
  const rootDir = await mkdtemp(path.join(tmpdir(), "kitty-pg-"));
  const dataDir = path.join(rootDir, "data");
  if (owner) await chown(rootDir, owner.uid, owner.gid);
  const spawnAs = { ...owner, cwd: rootDir, env: { LC_ALL: "C" } };

  const initdb = await execa(path.join(binDir, "initdb"), ["-D", dataDir, "-U", SUPERUSER, "--auth=trust", "--no-locale", "-E", "UTF8", "--no-sync", "--no-instructions"], { ...spawnAs, reject: false, all: true });
  if (initdb.exitCode !== 0) {
    await rm(rootDir, { recursive: true, force: true });
    throw new Error(`initdb failed (exit ${initdb.exitCode}): ${initdb.all}`);
  }
  // Trust, and only on the Unix socket and IPv4 loopback (the server listens nowhere else either).
  const hbaFile = path.join(dataDir, "pg_hba.conf");
  await writeFile(hbaFile, "local all all trust\nhost all all 127.0.0.1/32 trust\n");
  if (owner) await chown(hbaFile, owner.uid, owner.gid);

  const port = await freePort();
  // No fsync: only an OS crash could lose data. synchronous_commit stays on: with fsync off it costs nothing
  // measurable, and off it lets kill() drop the last ~200 ms of acknowledged commits (446 of 500 rows survived).
  const settings = { listen_addresses: "127.0.0.1", fsync: "off", full_page_writes: "off" };
  const args = ["-D", dataDir, "-p", String(port), "-k", rootDir, ...Object.entries(settings).flatMap(([name, value]) => ["-c", `${name}=${value}`])];
  const adminUrl = `postgres://${SUPERUSER}@127.0.0.1:${port}/postgres`;
  let child: ResultPromise | null = null;

  const launch = async () => {
    let output = "";
    let exited = false;
    const started = execa(path.join(binDir, "postgres"), args, { ...spawnAs, reject: false, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    started.stderr?.on("data", (chunk: Buffer) => (output = (output + chunk).slice(-8_000)));
    void started.then(() => (exited = true));
    child = started;
    await waitUntil(`Postgres on port ${port} accepts connections`, async () => {
      if (exited) throw new Error(`postgres exited while starting: ${output}`);
      return acceptsConnections(adminUrl);
    }, { timeoutMs: 60_000, intervalMs: 50 });
  };
  const halt = async (signal: "SIGINT" | "SIGKILL") => {
    if (!child) return;
    child.kill(signal); // SIGINT is Postgres's fast shutdown: ends sessions, checkpoints, exits
    // Resolves once stderr closes, and every backend holds it open: so only when none is left on the data folder.
    await child;
    child = null;
  };

  try {
    await launch();
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${DATABASE}`);
    await admin.end();
  } catch (error) {
    await halt("SIGKILL");
    await rm(rootDir, { recursive: true, force: true });
    throw error;
  }

  return {
    url: `postgres://${SUPERUSER}@127.0.0.1:${port}/${DATABASE}`,
    port,
    get pid() {
      const pid = child?.pid;
      if (pid === undefined) throw new Error("Postgres is not running");
      return pid;
    },
    async stop() {
      await halt("SIGINT");
      await rm(rootDir, { recursive: true, force: true });
    },
    async restart() {
      await halt("SIGINT");
      await launch();
    },
    kill: () => halt("SIGKILL"),
  };
}
