import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../helpers/paths.js";

const SRC = path.join(PROJECT_ROOT, "src");

/** Every import in src/, as [importing file, imported module] with project modules relative to src/. */
function imports(): Array<[string, string]> {
  const edges: Array<[string, string]> = [];
  for (const entry of readdirSync(SRC, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile() || !entry.name.endsWith(".ts")) continue;
    const file = path.join(entry.parentPath, entry.name);
    const from = path.relative(SRC, file);
    for (const [, target] of readFileSync(file, "utf8").matchAll(/^\s*(?:import|export)[^"']*?from\s+["']([^"']+)["']/gm)) {
      const resolved = target!.startsWith(".") ? path.relative(SRC, path.resolve(path.dirname(file), target!)).replace(/\.js$/, ".ts") : target!;
      edges.push([from, resolved]);
    }
  }
  return edges;
}

describe("the import graph keeps the layers apart", () => {
  const edges = imports();
  const offenders = (test: (from: string, to: string) => boolean) => edges.filter(([from, to]) => test(from, to)).map((edge) => edge.join(" -> "));

  it("finds the imports it checks", () => {
    expect(edges.length).toBeGreaterThan(50);
    expect(edges).toContainEqual(["queue/runJob.ts", "engines/engine.ts"]);
    expect(edges).toContainEqual(["mcp/tools/toolKit.ts", "queue/jobQueue.ts"]);
    expect(edges).toContainEqual(["storage/s3.ts", "@aws-sdk/client-s3"]);
  });

  it("tools reach the queue, never an engine or the worker", () => {
    expect(offenders((from, to) => from.startsWith("mcp/tools/") && (to.startsWith("engines/") || to === "queue/worker.ts"))).toEqual([]);
  });

  it("config and the model catalog sit above the engines", () => {
    expect(offenders((from, to) => (from === "config.ts" || from.startsWith("models/")) && to.startsWith("engines/"))).toEqual([]);
  });

  it("the generation module imports nothing of the project's", () => {
    expect(offenders((from) => from === "core/generation.ts")).toEqual([]);
  });

  it("the queue does not know which storage it talks to", () => {
    expect(offenders((from, to) => from.startsWith("queue/") && (to.startsWith("@aws-sdk/") || to === "storage/s3.ts" || to === "storage/local.ts"))).toEqual([]);
  });
});
