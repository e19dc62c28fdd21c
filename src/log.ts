import pino, { type Logger } from "pino";

/** stdout belongs to the MCP protocol, so logs always go to stderr. */
export function createLogger(level: string): Logger {
  return pino({ name: "kitty-images", level }, pino.destination({ fd: 2, sync: true }));
}

export type { Logger };
