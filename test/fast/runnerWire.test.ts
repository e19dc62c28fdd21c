import fc from "fast-check";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { RunnerProcess } from "../../src/engines/diffusersRunner.js";
import { EngineJobError } from "../../src/engines/engine.js";
import { makeRequest } from "../helpers/requests.js";

const SEED = 20261128;

/** Far past readline's chunks and the pipe's 64 KB: valid JSON, a progress event whose step is a megabyte of text. */
const MEGABYTE_LINE = JSON.stringify({ type: "progress", jobId: "j1", step: "x".repeat(1024 * 1024), totalSteps: 4 });

/**
 * Lines a broken or hostile runner could print: cut JSON, unknown types, wrong field types, megabyte lines. The
 * megabyte lines sit where they are hardest on the reader: first, last before ready, first after the request and
 * last before the answer. As one in six of the sample (185 of them, 194 MB) they only timed the pipe: 3 s a run.
 */
function junkLines(count: number): string[] {
  const valid = { type: "progress", jobId: "j1", step: 1, totalSteps: 4 };
  const line = fc.oneof(
    fc.json({ maxDepth: 3 }),
    fc.string({ maxLength: 60 }),
    fc.integer({ min: 1, max: 60 }).map((cut) => JSON.stringify(valid).slice(0, cut)),
    fc.record({ type: fc.constantFrom("ready", "progress", "done", "error", "bogus"), jobId: fc.anything(), step: fc.anything() }).map((event) => JSON.stringify(event) ?? "null"),
    fc.constant(JSON.stringify({ type: "done", jobId: "someone-else", outputPath: 3 })),
  );
  const lines = fc.sample(line, { numRuns: count, seed: SEED }).map((text) => text.replace(/\n/g, " "));
  for (const at of [0, count / 2 - 1, count / 2, count - 1]) lines[at] = MEGABYTE_LINE;
  return lines;
}

/**
 * A stand-in for the Python runner (a test double: the wire is the subject here): it prints junk, then a valid
 * ready event; for each generate it prints more junk and then answers the job with a valid error event.
 */
function fakeRunner(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "kitty-wire-"));
  writeFileSync(path.join(dir, "junk.json"), JSON.stringify(junkLines(1_000)));
  const script = path.join(dir, "runner");
  const ready = { type: "ready", device: "cpu", dtype: "float32", versions: { python: "3", torch: "2", diffusers: "0", transformers: "5" }, pid: 1 };
  writeFileSync(
    script,
    `#!${process.execPath}
const junk = JSON.parse(require("fs").readFileSync(${JSON.stringify(path.join(dir, "junk.json"))}, "utf8"));
const out = (line) => process.stdout.write(line + "\\n");
junk.slice(0, 500).forEach(out);
out(${JSON.stringify(JSON.stringify(ready))});
require("readline").createInterface({ input: process.stdin }).on("line", (line) => {
  const request = JSON.parse(line);
  if (request.type !== "generate") return;
  junk.slice(500).forEach(out);
  out(JSON.stringify({ type: "error", jobId: request.jobId, code: "out_of_memory", message: "answered after the junk" }));
});
`,
  );
  chmodSync(script, 0o755);
  return script;
}

describe("the runner's wire, TypeScript side, under 1,000 malformed lines", () => {
  it("skips what is outside the protocol, stays up, and still hears the valid events among them", async () => {
    const runner = new RunnerProcess({ python: fakeRunner(), packageDir: tmpdir(), env: { PATH: process.env.PATH ?? "" }, readyTimeoutMs: 20_000 }, pino({ level: "silent" }));
    try {
      expect(await runner.ready).toMatchObject({ type: "ready", device: "cpu" });
      const progress: number[] = [];
      const job = { jobId: "j1", outputPaths: ["/tmp/never.png"], previewPaths: [], initImagePath: null, onProgress: ({ step }: { step: number }) => progress.push(step), signal: new AbortController().signal };
      const { initImage: _initImage, mask: _mask, control: _control, edit: _edit, upscale: _upscale, count: _count, ...fields } = makeRequest();
      const outcome = await runner.generate({ type: "generate", ...fields, jobId: "j1", outputPath: job.outputPaths[0]! }, job, { ms: 20_000, why: "a test" }).then(
        () => null,
        (error: unknown) => error,
      );
      expect(outcome).toBeInstanceOf(EngineJobError);
      expect(outcome).toMatchObject({ code: "out_of_memory", message: "answered after the junk" });
      for (const step of progress) expect(Number.isInteger(step)).toBe(true);
      expect(runner.isAlive).toBe(true);
    } finally {
      await runner.stop(2_000);
    }
  });
});
