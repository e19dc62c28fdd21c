import Database from "better-sqlite3";
import { execa, execaSync } from "execa";
import { mkdirSync, readdirSync, rmSync, statfsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, inject, it } from "vitest";
import { startHttpServer, type RunningHttpServer } from "../helpers/httpServer.js";
import { errorText } from "../helpers/toolCalls.js";
import { waitUntil } from "../helpers/waitUntil.js";
import { makeTestHome, startServer, waitForJob, waitUntilRunning, type RunningServer, type TestHome } from "../helpers/server.js";

/** A size-capped disk for the staging folder: a small tmpfs, which needs root (as in CI); elsewhere the test says why it is skipped. */
function canMountTmpfs(): boolean {
  const probe = path.join("/tmp", `kitty-tmpfs-probe-${process.pid}`);
  mkdirSync(probe, { recursive: true });
  try {
    execaSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", probe]);
    execaSync("umount", [probe]);
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { recursive: true, force: true });
  }
}
const tmpfsAvailable = canMountTmpfs();
if (!tmpfsAvailable) console.warn("resourceFaults: cannot mount a tmpfs here (needs root); the disk-full test is skipped");

const tiny = { model: "tiny_sd15", width: 256, height: 256, steps: 2 };

describe("the disk and the database under pressure", () => {
  const servers: RunningServer[] = [];
  const httpServers: RunningHttpServer[] = [];
  const mounts: string[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) await server.close();
    for (const server of httpServers.splice(0)) await server.stop();
    for (const mount of mounts.splice(0)) await execa("umount", [mount], { reject: false });
  });

  it.skipIf(!tmpfsAvailable)("a full disk while staging fails that job with disk_full and where room is needed; nothing is left half-written, and the queue goes on once there is room", async () => {
    const home: TestHome = await makeTestHome(inject("tinyModelsDir"));
    const staging = path.join(home.home, "staging");
    mkdirSync(staging, { recursive: true });
    await execa("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", staging]);
    mounts.push(staging);
    const server = await startServer(home);
    servers.push(server);

    const before = await server.ok("generate_image", { ...tiny, prompt: "made while there is room", seed: 1 });
    expect((await waitForJob(server, before.jobId)).status).toBe("done");

    // The done job's staged files go just after it is recorded: measure the free space once they are gone.
    await waitUntil("the first job's staged files are cleared", () => readdirSync(staging).length === 0, { timeoutMs: 10_000 });
    // Leave 16 KB: far less than a 256x256 PNG of the tiny model's noise (about 200 KB).
    const filler = path.join(staging, "filler");
    const { bavail, bsize } = statfsSync(staging);
    writeFileSync(filler, Buffer.alloc(bavail * bsize - 16 * 1024));
    const full = await server.ok("generate_image", { ...tiny, prompt: "no room for this one", seed: 2 });
    const failed = await waitForJob(server, full.jobId);
    expect(failed.status).toBe("failed");
    expect(failed.error.code).toBe("disk_full");
    expect(failed.error.message).toContain(`no room to write the image in ${staging} (No space left on device)`);
    expect(failed.error.message).toMatch(/free space on that disk, or set KITTY_IMAGES_HOME/);
    // No partial PNG left to keep the disk full.
    expect(readdirSync(staging).filter((name) => name !== "filler")).toEqual([]);

    rmSync(filler);
    const after = await server.ok("generate_image", { ...tiny, prompt: "room again", seed: 3 });
    expect((await waitForJob(server, after.jobId)).status).toBe("done");
    const listed = await server.ok("list_latest_images", {});
    expect(listed.images.map((image: { prompt: string }) => image.prompt)).toEqual(["room again", "made while there is room"]);
  });

  it("the database held locked by another process: calls that must write say database_busy (MCP and REST 503), the running job still ends done, nothing is lost", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const server = await startServer(home);
    servers.push(server);
    // A second server process on the same data dir: the REST door, a follower of the first (which runs the queue).
    const http = await startHttpServer(home);
    httpServers.push(http);

    const running = await server.ok("generate_image", { ...tiny, steps: 100, prompt: "running through the lock", seed: 5 });
    await waitUntilRunning(server, running.jobId);

    // Another program (a backup, a sqlite3 shell) holds the write lock for longer than the server's 10 s busy timeout:
    // 25 s, so that a call still reaching its write some seconds late on a loaded machine meets the lock for 10 s.
    const databasePath = path.join(home.home, "kitty-images.sqlite");
    const holder = execa("python3", ["-c", HOLD_LOCK, databasePath, "25"], { reject: false });
    await new Promise<void>((resolve) => holder.stdout!.once("data", () => resolve()));

    const [mcpRefused, restRefused] = await Promise.all([
      server.call("generate_image", { ...tiny, prompt: "refused while locked" }),
      fetch(`${http.url}/api/images/generate`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...tiny, prompt: "refused over REST" }) }),
    ]);
    expect(mcpRefused.isError).toBe(true);
    expect(errorText(mcpRefused)).toMatch(/^database_busy: generate_image failed: another process has held the job database locked for over 10s \(SQLITE_BUSY\), so nothing was changed; try again/);
    expect(restRefused.status).toBe(503);
    expect(restRefused.headers.get("retry-after")).toBe("5");
    expect(await restRefused.json()).toMatchObject({ error: "database_busy", detail: expect.stringMatching(/^POST \/api\/images\/generate: another process has held the job database locked/) });
    // Reading goes on under the lock (WAL): status and listing answer at once.
    expect((await server.ok("job_status", { jobId: running.jobId })).status).toMatch(/running|done/);
    await holder;

    expect((await waitForJob(server, running.jobId)).status).toBe("done");
    const next = await server.ok("generate_image", { ...tiny, prompt: "after the lock", seed: 6 });
    expect((await waitForJob(server, next.jobId)).status).toBe("done");
    const db = new Database(databasePath, { readonly: true });
    try {
      const prompts = db.prepare(`SELECT json_extract(request, '$.prompt') AS prompt, state FROM jobs ORDER BY seq`).all();
      expect(prompts, "the refused calls queued nothing; both jobs finished").toEqual([
        { prompt: "running through the lock", state: "done" },
        { prompt: "after the lock", state: "done" },
      ]);
    } finally {
      db.close();
    }
  });
});

/** Opens the database, takes its write lock, says so on stdout, holds it argv[2] seconds, lets go. */
const HOLD_LOCK = `
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
`;
