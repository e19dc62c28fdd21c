import { execa } from "execa";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT, RUNNER_PYTHON, SERVER_ENTRY } from "../helpers/paths.js";

/**
 * `kitty-images service install | uninstall | status` against a temporary home: the files it writes for launchd and
 * systemd, read back by their own tools where this machine has them (Python's plistlib for the plist, which is
 * what launchd's format is; `systemd-analyze verify` for the unit), and the environment file Node reads.
 */
const systemdAnalyze = (() => {
  try {
    return execFileSync("which", ["systemd-analyze"], { encoding: "utf8" }).trim() || null;
  } catch {
    return null;
  }
})();

describe("kitty-images service", () => {
  const secret = "p@ss$word #1 \\ and `more`";
  const home = () => {
    const dir = mkdtempSync(path.join(tmpdir(), "kitty-service-"));
    return { dir, env: { PATH: process.env.PATH ?? "", HOME: dir, KITTY_IMAGES_HOME: path.join(dir, "data"), S3_SECRET_KEY: secret, KITTY_IMAGES_TOKEN: "a-token-of-24-characters!", OTHER_TOOL_SECRET: "must not travel" } };
  };
  const kitty = (args: string[], env: Record<string, string>) => execa(process.execPath, [SERVER_ENTRY, "service", ...args], { env, extendEnv: false, reject: false });

  it("systemd: a user unit running this Node and checkout, restarted on failure, logging to the data dir; the project's variables only, in a 0600 file", async () => {
    const { dir, env } = home();
    const installed = await kitty(["install", "--no-start", "--system", "systemd", "--port", "8190"], env);
    expect(installed.exitCode, installed.stderr).toBe(0);
    const unitPath = path.join(dir, ".config", "systemd", "user", "kitty-images.service");
    const envPath = path.join(dir, "data", "service.env");
    const unit = readFileSync(unitPath, "utf8");
    expect(unit).toContain(`ExecStart=${process.execPath} --env-file=${envPath} ${SERVER_ENTRY} serve --http --host 127.0.0.1 --port 8190`);
    expect(unit).toContain(`WorkingDirectory=${PROJECT_ROOT}`);
    expect(unit).toMatch(/^Restart=on-failure$/m);
    expect(unit).toContain(`StandardError=append:${path.join(dir, "data", "logs", "service.log")}`);
    expect(unit).toMatch(/^WantedBy=default\.target$/m);
    expect(unit, "no secret in the unit").not.toContain(secret);
    expect(unit).not.toContain("a-token-of-24-characters!");
    expect(statSync(envPath).mode & 0o777).toBe(0o600);
    const envText = readFileSync(envPath, "utf8");
    expect(envText).not.toContain("OTHER_TOOL_SECRET");
    expect(envText).not.toMatch(/^PATH=/m);
    // Node reads the file back to the same values, symbols and all.
    const read = await execa(process.execPath, [`--env-file=${envPath}`, "-e", "console.log(JSON.stringify([process.env.S3_SECRET_KEY, process.env.KITTY_IMAGES_TOKEN, process.env.KITTY_IMAGES_HOME, process.env.OTHER_TOOL_SECRET ?? null]))"], { env: { PATH: env.PATH }, extendEnv: false });
    expect(JSON.parse(read.stdout)).toEqual([secret, "a-token-of-24-characters!", path.join(dir, "data"), null]);
    expect(installed.stdout).toContain("not started (--no-start); start it with: systemctl --user enable --now kitty-images.service");
    expect(installed.stdout).toContain(`logs: ${path.join(dir, "data", "logs", "service.log")}`);
    expect(installed.stdout).toContain("MCP at http://127.0.0.1:8190/mcp");
    if (systemdAnalyze) {
      const verified = await execa("systemd-analyze", ["verify", unitPath], { reject: false });
      expect(verified.exitCode, verified.stderr).toBe(0);
      // The check can fail: the same unit pointing at a Node that is not there is refused.
      const broken = path.join(dir, "broken.service");
      writeFileSync(broken, unit.replace(process.execPath, "/no/such/node"));
      expect((await execa("systemd-analyze", ["verify", broken], { reject: false })).exitCode).not.toBe(0);
    } else console.warn("service.test: systemd-analyze is not on this machine; the unit was checked by its text only");

    const status = await kitty(["status", "--system", "systemd"], env);
    expect(status.stdout).toContain(`installed: ${unitPath}`);
    expect(status.stdout).toMatch(/^state: (not running|unknown .*)$/m);
    expect(status.stdout).toContain(`logs: ${path.join(dir, "data", "logs", "service.log")}`);
    expect(status.exitCode, "not running").toBe(1);

    const removed = await kitty(["uninstall", "--system", "systemd"], env);
    expect(removed.exitCode).toBe(0);
    expect(removed.stdout).toContain("the data dir and its logs stay");
    expect(existsSync(unitPath) || existsSync(envPath)).toBe(false);
    const after = await kitty(["status", "--system", "systemd"], env);
    expect(after.stdout).toMatch(/^not installed/);
    expect(after.exitCode).toBe(1);
  });

  it("launchd: an agent plist launchd can read (checked with plistlib): started at load, kept alive only after a failure", async () => {
    const { dir, env } = home();
    const installed = await kitty(["install", "--no-start", "--system", "launchd"], env);
    expect(installed.exitCode, installed.stderr).toBe(0);
    const plistPath = path.join(dir, "Library", "LaunchAgents", "local.kitty-images.plist");
    const envPath = path.join(dir, "data", "service.env");
    const parsed = await execa(RUNNER_PYTHON, ["-c", "import json, plistlib, sys; print(json.dumps(plistlib.load(open(sys.argv[1], 'rb'))))", plistPath]);
    const plist = JSON.parse(parsed.stdout);
    expect(plist).toEqual({
      Label: "local.kitty-images",
      ProgramArguments: [process.execPath, `--env-file=${envPath}`, SERVER_ENTRY, "serve", "--http", "--host", "127.0.0.1", "--port", "8089"],
      WorkingDirectory: PROJECT_ROOT,
      RunAtLoad: true,
      KeepAlive: { SuccessfulExit: false },
      ThrottleInterval: 10,
      StandardOutPath: path.join(dir, "data", "logs", "service.log"),
      StandardErrorPath: path.join(dir, "data", "logs", "service.log"),
    });
    expect(readFileSync(plistPath, "utf8")).not.toContain(secret);
    expect(installed.stdout).toContain(`start it with: launchctl bootstrap gui/${process.getuid!()} ${plistPath}`);
    const removed = await kitty(["uninstall", "--system", "launchd"], env);
    expect(removed.exitCode).toBe(0);
    expect(existsSync(plistPath)).toBe(false);
  });

  it("refuses what it cannot do, saying what to do instead", async () => {
    const { env } = home();
    const bare = await kitty([], env);
    expect(bare.exitCode).toBe(2);
    expect(bare.stderr).toContain("service needs install, uninstall or status (got nothing)");
    const worker = await kitty(["install", "--worker", "--no-start"], env);
    expect(worker.exitCode).toBe(2);
    expect(worker.stderr).toContain("set KITTY_IMAGES_DATABASE_URL first");
    const quote = await kitty(["install", "--no-start", "--system", "systemd"], { ...env, S3_SECRET_KEY: "it's" });
    expect(quote.exitCode).toBe(1);
    expect(quote.stderr).toContain("S3_SECRET_KEY holds a quote or a line break");
  });
});
