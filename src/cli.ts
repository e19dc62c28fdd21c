#!/usr/bin/env node
// First, before anything loads better-sqlite3: a too-old Node gets a message instead of a native crash.
import "./cli/requireNode.js";
import { enableCompileCache } from "node:module";

// Every MCP client starts its own server, often many times a day: Node keeps the compiled code of the ~450 modules
// loaded before tools/list on disk, and later starts skip compiling them (NODE_COMPILE_CACHE moves or disables it).
enableCompileCache();
const { main } = await import("./cli/main.js");
await main(process.argv.slice(2));
