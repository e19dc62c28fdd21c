// One large stdio message (a pasted image as a data: URL) through the SDK's own StdioServerTransport and through
// ours (src/mcp/stdioTransport.ts), side by side in one run: the time from the first chunk written to the message
// handed to the server (the process does nothing else meanwhile: it is CPU spent copying).
//
//   node bench/stdio-large-message.mjs [--mb 27] [--chunk-kb 64] [--runs 3]
//
// The SDK's ReadBuffer concatenates its whole buffer with every chunk that arrives, so a line of N bytes in
// chunks of c costs about N²/2c bytes copied; ours collects the chunks and joins them once, when the line ends.
import { PassThrough } from "node:stream";
import { parseArgs } from "node:util";
import pino from "pino";
import { StdioServerTransport } from "@modelcontextprotocol/server/stdio";
import { boundedStdioTransport } from "../dist/mcp/stdioTransport.js";

const { values } = parseArgs({ options: { mb: { type: "string", default: "27" }, "chunk-kb": { type: "string", default: "64" }, runs: { type: "string", default: "3" } } });
const bytes = Number(values.mb) * 1e6;
const chunkBytes = Number(values["chunk-kb"]) * 1024;
const runs = Number(values.runs);

// A tools/call whose argument is a data: URL of `bytes` characters, as an agent pastes an image.
const line = Buffer.from(
  `${JSON.stringify({ jsonrpc: "2.0", id: 1, method: "tools/call", params: { name: "generate_image", arguments: { prompt: "x", init_image: `data:image/png;base64,${"A".repeat(bytes)}` } } })}\n`,
);

async function timeOne(makeTransport) {
  const stdin = new PassThrough({ highWaterMark: chunkBytes });
  const transport = makeTransport(stdin);
  const received = new Promise((resolve, reject) => {
    transport.onmessage = () => resolve();
    transport.onerror = reject;
  });
  await transport.start();
  const started = performance.now();
  for (let at = 0; at < line.length; at += chunkBytes) {
    if (!stdin.write(line.subarray(at, at + chunkBytes))) await new Promise((resolve) => stdin.once("drain", resolve));
  }
  await received;
  const seconds = (performance.now() - started) / 1000;
  await transport.close().catch(() => undefined);
  return seconds;
}

const quiet = pino({ level: "silent" });
const contenders = {
  "SDK StdioServerTransport (64 MiB buffer)": (stdin) => new StdioServerTransport(stdin, new PassThrough(), { maxBufferSize: 64 * 1024 * 1024 }),
  "kitty-images boundedStdioTransport": (stdin) => boundedStdioTransport(quiet, () => {}, stdin),
};
const median = (list) => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)];
const results = {};
for (const [name, make] of Object.entries(contenders)) {
  const samples = [];
  for (let run = 0; run < runs; run++) samples.push(await timeOne(make));
  results[name] = median(samples);
}
console.log(`one ${(line.length / 1e6).toFixed(1)} MB stdio line in ${values["chunk-kb"]} KB chunks, median of ${runs}, Node ${process.versions.node}`);
for (const [name, seconds] of Object.entries(results)) console.log(`  ${name.padEnd(44)} ${seconds.toFixed(3)} s`);
const [sdk, ours] = Object.values(results);
console.log(`  SDK / ours: ${(sdk / ours).toFixed(1)}x`);
