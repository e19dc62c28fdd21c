import path from "node:path";

/** The two service managers a person logs in to: launchd on macOS, systemd's user instance on Linux. */
export type ServiceSystem = "launchd" | "systemd";

export const SERVICE_LABEL = "local.kitty-images";
export const SYSTEMD_UNIT = "kitty-images.service";

/** What the service runs and where its files go; everything absolute, since a service has no shell to resolve them. */
export interface ServicePlan {
  system: ServiceSystem;
  /** The Node that installs it (≥ 22, checked at start): a login service's PATH often has none, or an old one. */
  node: string;
  /** dist/cli.js of this checkout. */
  entry: string;
  /** `serve --http --host H --port P`, or `worker`. */
  args: string[];
  workingDirectory: string;
  /** The 0600 file with the project's variables (secrets included), read by `node --env-file`: launchd has no env-file key. */
  envFile: string;
  logFile: string;
  /** Where the unit or plist goes. */
  unitFile: string;
}

export function unitFileFor(system: ServiceSystem, home: string): string {
  return system === "launchd" ? path.join(home, "Library", "LaunchAgents", `${SERVICE_LABEL}.plist`) : path.join(home, ".config", "systemd", "user", SYSTEMD_UNIT);
}

/** The command line the service runs, as an argument list. */
export function commandLine(plan: ServicePlan): string[] {
  return [plan.node, `--env-file=${plan.envFile}`, plan.entry, ...plan.args];
}

const xml = (text: string) => text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** A launchd agent: started at login, started again if it exits with a failure (not after a clean stop), output to one log. */
export function launchdPlist(plan: ServicePlan): string {
  return [
    `<?xml version="1.0" encoding="UTF-8"?>`,
    `<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">`,
    `<plist version="1.0">`,
    `<dict>`,
    `  <key>Label</key>`,
    `  <string>${SERVICE_LABEL}</string>`,
    `  <key>ProgramArguments</key>`,
    `  <array>`,
    ...commandLine(plan).map((arg) => `    <string>${xml(arg)}</string>`),
    `  </array>`,
    `  <key>WorkingDirectory</key>`,
    `  <string>${xml(plan.workingDirectory)}</string>`,
    `  <key>RunAtLoad</key>`,
    `  <true/>`,
    `  <key>KeepAlive</key>`,
    `  <dict>`,
    `    <key>SuccessfulExit</key>`,
    `    <false/>`,
    `  </dict>`,
    `  <key>ThrottleInterval</key>`,
    `  <integer>10</integer>`,
    `  <key>StandardOutPath</key>`,
    `  <string>${xml(plan.logFile)}</string>`,
    `  <key>StandardErrorPath</key>`,
    `  <string>${xml(plan.logFile)}</string>`,
    `</dict>`,
    `</plist>`,
    "",
  ].join("\n");
}

/** systemd quotes an argument with spaces in double quotes; `%` is its specifier sign and `\\` its escape. */
const systemdArg = (arg: string) => {
  const escaped = arg.replace(/\\/g, "\\\\").replace(/%/g, "%%").replace(/"/g, '\\"');
  return /[\s"]/.test(arg) ? `"${escaped}"` : escaped;
};

/** A systemd user unit: started with the user's session (or at boot, with lingering), restarted on failure. */
export function systemdUnit(plan: ServicePlan): string {
  return [
    "[Unit]",
    `Description=kitty-images: ${plan.args.join(" ")}`,
    "After=network-online.target",
    "Wants=network-online.target",
    "",
    "[Service]",
    "Type=simple",
    `ExecStart=${commandLine(plan).map(systemdArg).join(" ")}`,
    `WorkingDirectory=${systemdArg(plan.workingDirectory)}`,
    "Restart=on-failure",
    "RestartSec=5",
    `StandardOutput=append:${plan.logFile}`,
    `StandardError=append:${plan.logFile}`,
    "",
    "[Install]",
    "WantedBy=default.target",
    "",
  ].join("\n");
}

/**
 * The service's environment file, for `node --env-file`: one KEY='value' per line, single-quoted so that nothing in
 * a value (a `$`, a `#`, a password's symbols) is read as syntax. A value with a quote or a line break cannot be
 * written so; it is refused by name.
 */
export function envFileText(vars: Record<string, string>): string {
  const lines = ["# kitty-images service environment: written by `kitty-images service install`, read by node --env-file. Keep it 0600."];
  for (const [name, value] of Object.entries(vars)) {
    if (/['\r\n]/.test(value)) throw new Error(`${name} holds a quote or a line break, which a service environment file cannot carry; set it without one and install again`);
    lines.push(`${name}='${value}'`);
  }
  return `${lines.join("\n")}\n`;
}
