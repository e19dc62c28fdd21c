import { readFileSync } from "node:fs";

/** This release, as package.json names it: read once, so the MCP handshake, /healthz and the CLI never disagree. */
export const VERSION: string = (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
