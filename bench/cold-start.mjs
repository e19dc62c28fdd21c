// Cold start of a stdio MCP server to an answered tools/list, ours beside two peer servers started the same way
// in the same run (the reference servers from npm), plus a one-tool server on the same SDK as the floor.
//
//   node bench/cold-start.mjs [--runs 10]
//
// Each run spawns the server, sends initialize, then tools/list, and stops the clock when tools/list is answered.
// Prints the median per server and ours over each peer. Ours runs on embedded defaults (SQLite + local folder) with
// the demo's tiny models; the peers are installed once into .cache/bench-peers.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { runs: { type: "string", default: "10" } } });
const runs = Number(values.runs);
const peers = path.join(root, ".cache", "bench-peers");
const PEER_PACKAGES = ["@modelcontextprotocol/server-everything@2026.8.31", "@modelcontextprotocol/server-memory@2026.8.31"];
if (!existsSync(path.join(peers, "node_modules", "@modelcontextprotocol", "server-memory"))) {
  mkdirSync(peers, { recursive: true });
  execFileSync("npm", ["install", "--no-audit", "--no-fund", "--prefix", peers, ...PEER_PACKAGES], { stdio: "inherit" });
}

const home = mkdtempSync(path.join(tmpdir(), "kitty-cold-"));
writeFileSync(path.join(home, "models.yaml"), `tiny: ${path.join(home, "no-weights-needed-to-list-tools")}\n`);
const oneTool = path.join(home, "one-tool.mjs");
writeFileSync(
  oneTool,
  `import { McpServer } from ${JSON.stringify(path.join(root, "node_modules/@modelcontextprotocol/server/dist/index.mjs"))};
import { serveStdio } from ${JSON.stringify(path.join(root, "node_modules/@modelcontextprotocol/server/dist/stdio.mjs"))};
import { z } from ${JSON.stringify(path.join(root, "node_modules/zod/index.js"))};
serveStdio(() => { const s = new McpServer({ name: "one", version: "0" }); s.registerTool("echo", { inputSchema: z.object({ text: z.string() }) }, async ({ text }) => ({ content: [{ type: "text", text }] })); return s; });`,
);

// Ours enables Node's compile cache (src/cli.ts); the peers do not. The first start on a machine has no cache yet:
// that is the row with the cache off.
const servers = {
  "kitty-images": [process.execPath, path.join(root, "dist", "cli.js"), "serve"],
  "kitty-images, no cache": [process.execPath, path.join(root, "dist", "cli.js"), "serve"],
  "server-everything": [process.execPath, path.join(peers, "node_modules/@modelcontextprotocol/server-everything/dist/index.js"), "stdio"],
  "server-memory": [process.execPath, path.join(peers, "node_modules/@modelcontextprotocol/server-memory/dist/index.js")],
  "one tool, SDK v2": [process.execPath, oneTool],
};
const env = { ...process.env, KITTY_IMAGES_HOME: path.join(home, "data"), MODELS_YAML: path.join(home, "models.yaml"), KITTY_IMAGES_LOG_LEVEL: "warn", MEMORY_FILE_PATH: path.join(home, "memory.json") };

function once([command, ...args], name) {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { env: name.endsWith("no cache") ? { ...env, NODE_DISABLE_COMPILE_CACHE: "1" } : env, stdio: ["pipe", "pipe", "ignore"] });
    let buffer = "";
    const send = (message) => child.stdin.write(`${JSON.stringify({ jsonrpc: "2.0", ...message })}\n`);
    child.on("error", reject);
    child.stdout.on("data", (chunk) => {
      buffer += chunk;
      const lines = buffer.split("\n");
      buffer = lines.pop();
      for (const line of lines) {
        const message = JSON.parse(line);
        if (message.id === 1) {
          send({ method: "notifications/initialized" });
          send({ id: 2, method: "tools/list", params: {} });
        } else if (message.id === 2) {
          resolve(performance.now() - started);
          child.kill();
        }
      }
    });
    send({ id: 1, method: "initialize", params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "bench", version: "0" } } });
  });
}

const median = (numbers) => [...numbers].sort((a, b) => a - b)[Math.floor(numbers.length / 2)];
const results = {};
for (const [name, command] of Object.entries(servers)) {
  await once(command, name); // warm the file cache (and the compile cache), as a second start would find them
  const times = [];
  for (let run = 0; run < runs; run++) times.push(await once(command, name));
  results[name] = median(times);
}
console.log(`cold start to an answered tools/list over stdio, median of ${runs}, Node ${process.version}`);
for (const [name, ms] of Object.entries(results)) console.log(`  ${name.padEnd(22)} ${ms.toFixed(0).padStart(5)} ms`);
for (const ours of ["kitty-images", "kitty-images, no cache"]) {
  for (const peer of Object.keys(results).filter((name) => !name.startsWith("kitty-images"))) {
    console.log(`  ${ours} / ${peer.padEnd(22)} ${(results[ours] / results[peer]).toFixed(2)}x`);
  }
}
