import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../helpers/paths.js";

const SRC = path.join(PROJECT_ROOT, "src");

/**
 * The rooms of src/, lowest first: a file may import its own room and the rooms below it, never one above. The
 * database implementations sit above the queue whose port they implement; the doors above both; app/ wires
 * everything and only the CLI reaches it.
 */
const LAYERS: readonly (readonly string[])[] = [
  ["core/"],
  ["images/"],
  ["models/"],
  ["config.ts"],
  ["storage/", "engines/"],
  ["queue/"],
  ["db/"],
  ["uploads/"],
  ["mcp/"],
  ["http/"],
  ["app/"],
  ["cli/"],
  ["cli.ts"],
];

const layerOf = (file: string): number => {
  const layer = LAYERS.findIndex((rooms) => rooms.some((room) => (room.endsWith("/") ? file.startsWith(room) : file === room)));
  if (layer < 0) throw new Error(`${file} is in no layer: add its room to LAYERS`);
  return layer;
};

function sourceFiles(): Array<{ file: string; text: string }> {
  return readdirSync(SRC, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
    .map((entry) => {
      const absolute = path.join(entry.parentPath, entry.name);
      return { file: path.relative(SRC, absolute), text: readFileSync(absolute, "utf8") };
    });
}

/** Every import in src/ (static, re-export and dynamic), as [importing file, imported module], project modules relative to src/. */
function imports(): Array<[string, string]> {
  const edges: Array<[string, string]> = [];
  for (const { file, text } of sourceFiles()) {
    const specifiers = [
      ...text.matchAll(/^\s*(?:import|export)[^"']*?from\s+["']([^"']+)["']/gm),
      ...text.matchAll(/\bimport\(\s*["']([^"']+)["']\s*\)/g),
    ].map((match) => match[1]!);
    for (const target of specifiers) {
      const resolved = target.startsWith(".") ? path.relative(SRC, path.resolve(path.dirname(path.join(SRC, file)), target)).replace(/\.js$/, ".ts") : target;
      edges.push([file, resolved]);
    }
  }
  return edges;
}

/** Files on an import cycle (Tarjan's strongly connected components of more than one file). */
function cycles(edges: Array<[string, string]>): string[][] {
  const next = new Map<string, string[]>();
  for (const [from, to] of edges) if (!to.startsWith("@") && to.endsWith(".ts")) next.set(from, [...(next.get(from) ?? []), to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const found: string[][] = [];
  const visit = (node: string) => {
    index.set(node, index.size);
    low.set(node, index.get(node)!);
    stack.push(node);
    for (const to of next.get(node) ?? []) {
      if (!index.has(to)) {
        visit(to);
        low.set(node, Math.min(low.get(node)!, low.get(to)!));
      } else if (stack.includes(to)) low.set(node, Math.min(low.get(node)!, index.get(to)!));
    }
    if (low.get(node) === index.get(node)) {
      const component: string[] = [];
      for (let member = stack.pop()!; ; member = stack.pop()!) {
        component.push(member);
        if (member === node) break;
      }
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const node of next.keys()) if (!index.has(node)) visit(node);
  return found;
}

describe("the import graph keeps the layers apart", () => {
  const edges = imports();
  const project = edges.filter(([, to]) => to.endsWith(".ts"));
  const offenders = (test: (from: string, to: string) => boolean) => project.filter(([from, to]) => test(from, to)).map((edge) => edge.join(" -> "));

  it("finds the imports it checks", () => {
    expect(edges.length).toBeGreaterThan(300);
    expect(edges).toContainEqual(["queue/runJob.ts", "engines/engine.ts"]);
    expect(edges).toContainEqual(["mcp/tools/toolKit.ts", "queue/jobQueue.ts"]);
    expect(edges).toContainEqual(["storage/s3.ts", "@aws-sdk/client-s3"]);
    // Dynamic imports count too: Postgres is loaded only when the queue is there.
    expect(edges).toContainEqual(["app/createApp.ts", "app/postgresApp.ts"]);
  });

  it("has no cycle", () => {
    expect(cycles(edges)).toEqual([]);
  });

  it("never imports up a layer", () => {
    expect(offenders((from, to) => layerOf(to) > layerOf(from))).toEqual([]);
  });

  it("the queue never knows its database; storage never knows the queue; only the CLI reaches app/", () => {
    expect(offenders((from, to) => from.startsWith("queue/") && to.startsWith("db/"))).toEqual([]);
    expect(offenders((from, to) => from.startsWith("storage/") && (to.startsWith("queue/") || to.startsWith("db/")))).toEqual([]);
    expect(offenders((from, to) => to.startsWith("app/") && !from.startsWith("app/") && !from.startsWith("cli/"))).toEqual([]);
  });

  it("tools reach the queue, never an engine, a database or the worker", () => {
    expect(offenders((from, to) => from.startsWith("mcp/tools/") && (to.startsWith("engines/") || to.startsWith("db/") || to === "queue/worker.ts"))).toEqual([]);
  });

  it("config and the model catalog sit above the engines", () => {
    expect(offenders((from, to) => (from === "config.ts" || from.startsWith("models/")) && to.startsWith("engines/"))).toEqual([]);
  });

  it("the generation module imports nothing of the project's", () => {
    expect(offenders((from) => from === "core/generation.ts")).toEqual([]);
  });

  it("the queue does not know which storage it talks to", () => {
    expect(
      edges.filter(([from, to]) => from.startsWith("queue/") && (to.startsWith("@aws-sdk/") || to === "storage/s3.ts" || to === "storage/local.ts")).map((edge) => edge.join(" -> ")),
    ).toEqual([]);
  });
});

describe("the source reads as one plan", () => {
  const files = sourceFiles();

  it("reads the database URL in one file besides config.ts, which reads the environment", () => {
    const readers = files.filter(({ file, text }) => file !== "config.ts" && /\bdatabaseUrl\b/.test(text)).map(({ file }) => file);
    expect(readers).toEqual(["app/createApp.ts"]);
  });

  it("reads the environment only in config.ts (and the CLI's Node check, before anything loads)", () => {
    const readers = files.filter(({ file, text }) => /process\.env(\.[A-Za-z_]|\[)/.test(text)).map(({ file }) => file).sort();
    expect(readers.filter((file) => file !== "config.ts" && file !== "cli/requireNode.ts")).toEqual([]);
  });

  it("has one worker class", () => {
    const workers = files.flatMap(({ file, text }) => [...text.matchAll(/^export class (\w*Worker)\b/gm)].map((match) => `${file}: ${match[1]}`));
    expect(workers).toEqual(["queue/worker.ts: Worker"]);
  });

  it("says at its top why a file runs past 250 lines", () => {
    const long = files.filter(({ text }) => text.split("\n").length > 250);
    expect(long.filter(({ text }) => !text.startsWith("//")).map(({ file }) => file)).toEqual([]);
  });
});
