#!/usr/bin/env node
// First, before anything loads better-sqlite3: a too-old Node gets a message instead of a native crash.
import "./cli/requireNode.js";
import { main } from "./cli/main.js";

await main(process.argv.slice(2));
