import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { homedir, userInfo } from "node:os";
import path from "node:path";
import { queueIsShared } from "../app/createApp.js";
import { loadConfig, PROJECT_ENV_NAMES, PROJECT_ROOT, projectEnvironment } from "../config.js";
import { commandLine, envFileText, launchdPlist, SERVICE_LABEL, SYSTEMD_UNIT, systemdUnit, unitFileFor, type ServicePlan, type ServiceSystem } from "./serviceFiles.js";
import { numberFlag, parseCommand, UsageError } from "./usage.js";

const say = (line: string) => process.stdout.write(`${line}\n`);

/**
 * `kitty-images service install [--host H] [--port P] [--worker] [--no-start] | uninstall | status`: the server as a
 * login service (launchd agent on macOS, systemd user unit on Linux), the way the original images-service was run.
 * It runs `serve --http` (or, with --worker, `worker` on a Postgres queue) with this Node, this checkout and the
 * project's variables of the shell it is installed from, kept in a 0600 environment file.
 */
export async function serviceCommand(args: string[]): Promise<void> {
  const [action, ...rest] = args;
  const { values } = parseCommand(`service ${action ?? ""}`.trim(), rest, {
    host: { type: "string" },
    port: { type: "string" },
    worker: { type: "boolean" },
    http: { type: "boolean" },
    "no-start": { type: "boolean" },
    system: { type: "string" },
  }, { min: 0, max: 0, name: "" });
  const system = systemOf(values.system);
  const port = numberFlag("port", values.port) ?? 8089;
  if (port < 1 || port > 65535) throw new UsageError(`--port must be a port number from 1 to 65535 (got ${values.port})`);
  const config = loadConfig(process.env, { defaultLogLevel: "warn" });
  const home = homedir();
  const plan: ServicePlan = {
    system,
    node: process.execPath,
    entry: path.join(PROJECT_ROOT, "dist", "cli.js"),
    args: values.worker ? ["worker"] : ["serve", "--http", "--host", values.host ?? "127.0.0.1", "--port", String(port)],
    workingDirectory: PROJECT_ROOT,
    envFile: path.join(config.home, "service.env"),
    logFile: path.join(config.home, "logs", "service.log"),
    unitFile: unitFileFor(system, home),
  };
  if (values.worker && (values.host !== undefined || values.port !== undefined || values.http)) throw new UsageError("service install --worker runs a GPU worker, which has no door: leave out --http, --host and --port");
  if (values.worker && !queueIsShared(config)) throw new UsageError("service install --worker takes jobs from a shared Postgres queue: set KITTY_IMAGES_DATABASE_URL first (one machine needs no worker)");
  switch (action) {
    case "install":
      return install(plan, !values["no-start"]);
    case "uninstall":
      return uninstall(plan);
    case "status":
      return status(plan);
    default:
      throw new UsageError(`service needs install, uninstall or status (got ${action === undefined ? "nothing" : `'${action}'`})`);
  }
}

function systemOf(asked: string | undefined): ServiceSystem {
  if (asked === "launchd" || asked === "systemd") return asked;
  if (asked !== undefined) throw new UsageError(`--system must be launchd or systemd (got '${asked}')`);
  if (process.platform === "darwin") return "launchd";
  if (process.platform === "linux") return "systemd";
  throw new UsageError(`service install knows launchd (macOS) and systemd (Linux), not ${process.platform}; run kitty-images serve --http under your own supervisor`);
}

/** Runs a manager's command; null when it is not on this machine or fails (what it said is kept). */
function run(command: string, args: string[]): { ok: boolean; output: string } | null {
  try {
    return { ok: true, output: execFileSync(command, args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }) };
  } catch (error) {
    const failed = error as { code?: string; stdout?: string; stderr?: string };
    if (failed.code === "ENOENT") return null;
    return { ok: false, output: `${failed.stdout ?? ""}${failed.stderr ?? ""}`.trim() };
  }
}

const uid = () => process.getuid?.() ?? userInfo().uid;
const startCommand = (plan: ServicePlan) =>
  plan.system === "launchd" ? ["launchctl", "bootstrap", `gui/${uid()}`, plan.unitFile] : ["systemctl", "--user", "enable", "--now", SYSTEMD_UNIT];

function install(plan: ServicePlan, start: boolean): void {
  const vars = projectEnvironment();
  mkdirSync(path.dirname(plan.envFile), { recursive: true, mode: 0o700 });
  writeFileSync(plan.envFile, envFileText(vars), { mode: 0o600 });
  chmodSync(plan.envFile, 0o600); // an older file keeps its mode on overwrite
  mkdirSync(path.dirname(plan.logFile), { recursive: true, mode: 0o700 });
  mkdirSync(path.dirname(plan.unitFile), { recursive: true });
  writeFileSync(plan.unitFile, plan.system === "launchd" ? launchdPlist(plan) : systemdUnit(plan));
  say(`wrote ${plan.unitFile}`);
  say(`wrote ${plan.envFile} (mode 0600): ${Object.keys(vars).join(", ") || "no project variables were set"}`);
  say(`it runs: ${commandLine(plan).join(" ")}`);
  const [command, ...args] = startCommand(plan);
  if (!start) {
    say(`not started (--no-start); start it with: ${[command, ...args].join(" ")}`);
  } else {
    if (plan.system === "launchd") run("launchctl", ["bootout", `gui/${uid()}/${SERVICE_LABEL}`]); // a loaded older copy
    else run("systemctl", ["--user", "daemon-reload"]);
    const started = run(command!, args);
    if (started?.ok) say(`started; it starts again at each login${plan.system === "launchd" ? "" : " (and restarts on failure)"}`);
    else say(`could not start it here (${started ? started.output.split("\n")[0] : `${command} is not on this machine`}); start it with: ${[command, ...args].join(" ")}`);
  }
  if (plan.system === "systemd") lingerHint();
  say(`logs: ${plan.logFile}`);
  if (plan.args[0] === "serve") say(`once it runs: MCP at http://${plan.args[3]}:${plan.args[5]}/mcp, the gallery at http://${plan.args[3]}:${plan.args[5]}/gallery`);
}

/** A user unit runs only while its user is logged in, unless lingering is on: say so on a machine nobody logs in to. */
function lingerHint(): void {
  const user = userInfo().username;
  const linger = run("loginctl", ["show-user", user, "--property=Linger", "--value"]);
  if (linger?.ok && linger.output.trim() === "yes") return;
  say(`to run it without a login session (a headless machine), let it linger: loginctl enable-linger ${user}`);
}

function uninstall(plan: ServicePlan): void {
  if (plan.system === "launchd") run("launchctl", ["bootout", `gui/${uid()}/${SERVICE_LABEL}`]);
  else run("systemctl", ["--user", "disable", "--now", SYSTEMD_UNIT]);
  const removed = [plan.unitFile, plan.envFile].filter((file) => existsSync(file));
  for (const file of removed) rmSync(file);
  if (plan.system === "systemd") run("systemctl", ["--user", "daemon-reload"]);
  say(removed.length ? `stopped and removed ${removed.join(", ")}; the data dir and its logs stay` : "no kitty-images service was installed");
}

function status(plan: ServicePlan): void {
  if (!existsSync(plan.unitFile)) {
    say(`not installed (no ${plan.unitFile}); install it with: kitty-images service install`);
    process.exitCode = 1;
    return;
  }
  say(`installed: ${plan.unitFile}`);
  const asked = plan.system === "launchd" ? run("launchctl", ["print", `gui/${uid()}/${SERVICE_LABEL}`]) : run("systemctl", ["--user", "show", SYSTEMD_UNIT, "--property=ActiveState,SubState,MainPID"]);
  const running = asked?.ok && (plan.system === "launchd" ? /state = running/.test(asked.output) : /ActiveState=active/.test(asked.output));
  const pid = asked?.ok ? (/pid = (\d+)/.exec(asked.output) ?? /MainPID=([1-9]\d*)/.exec(asked.output))?.[1] : undefined;
  if (!asked) say(`state: unknown (${plan.system === "launchd" ? "launchctl" : "systemctl"} is not on this machine)`);
  else say(`state: ${running ? `running${pid ? ` (pid ${pid})` : ""}` : "not running"}`);
  say(`logs: ${plan.logFile}`);
  say(`environment: ${plan.envFile} (project variables only: ${PROJECT_ENV_NAMES.length} known names)`);
  if (!running) process.exitCode = 1;
}
