import { writeSync } from "node:fs";
import pino, { type DestinationStream, type Logger } from "pino";

export interface LoggerOptions {
  /** One "WARN message key=value" line per entry, for a person at a terminal; otherwise pino's JSON lines. */
  readable?: boolean;
}

/** stdout belongs to the MCP protocol (or to a command's own output), so logs always go to stderr. */
export function createLogger(level: string, { readable = false }: LoggerOptions = {}): Logger {
  return pino({ name: "kitty-images", level }, readable ? readableStderr : pino.destination({ fd: 2, sync: true }));
}

/** Fields every pino line carries that a person at a terminal does not need to read. */
const HIDDEN = new Set(["level", "time", "pid", "hostname", "name", "msg"]);

/** Set while something redraws a line on stderr (the CLI's progress bar): called before each log line is written. */
let beforeLogLine: (() => void) | null = null;

/** A progress bar clears its line through this, so a log line goes above it whole instead of glued onto it. */
export function clearLineBeforeLogs(hook: (() => void) | null): void {
  beforeLogLine = hook;
}

const readableStderr: DestinationStream = {
  write(line: string) {
    beforeLogLine?.();
    writeSync(2, `${formatLogLine(line)}\n`);
  },
};

/** A pino JSON line as "WARN message key=value key2="two words""; a line that is not JSON is passed on as it is. */
export function formatLogLine(line: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line.trimEnd();
  }
  const label = (pino.levels.labels[entry.level as number] ?? String(entry.level)).toUpperCase();
  const fields = Object.entries(entry)
    .filter(([key]) => !HIDDEN.has(key))
    .map(([key, value]) => `${key}=${typeof value === "string" && /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value)}`);
  return [label, entry.msg ?? "", ...fields].filter((part) => part !== "").join(" ");
}

export type { Logger };
