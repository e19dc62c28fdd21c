import { execa } from "execa";
import { createServer } from "node:net";
import path from "node:path";
import { describe, expect, inject, it } from "vitest";
import { freePort } from "../helpers/minio.js";
import { PROJECT_ROOT, RUNNER_PYTHON, SERVER_ENTRY } from "../helpers/paths.js";
import { makeTestHome, serverEnv, type TestHome } from "../helpers/server.js";

/**
 * What a person at a terminal sees, captured on a pseudo-terminal (test/clients/pty_run.py): the commands a
 * newcomer runs first, and Ctrl-C as the terminal sends it (to the whole foreground process group).
 */
interface PtyRun {
  output: string;
  exit: number | null;
  signal: number | null;
  matched: boolean[];
}

async function onTerminal(home: TestHome, args: string[], steps: unknown[], extraEnv: Record<string, string> = {}): Promise<PtyRun> {
  const env = { ...serverEnv(home, { KITTY_IMAGES_LOG_LEVEL: "info", ...extraEnv }), TERM: "xterm-256color", COLUMNS: "100" };
  const spec = { argv: [process.execPath, SERVER_ENTRY, ...args], env, cwd: PROJECT_ROOT, steps, end_timeout: 60 };
  const { stdout } = await execa(RUNNER_PYTHON, [path.join(PROJECT_ROOT, "test/clients/pty_run.py"), JSON.stringify(spec)], { timeout: 240_000 });
  return JSON.parse(stdout) as PtyRun;
}

const kitty = (home: TestHome, args: string[]) => execa(process.execPath, [SERVER_ENTRY, ...args], { env: serverEnv(home, { KITTY_IMAGES_LOG_LEVEL: "warn" }), extendEnv: false, reject: false });

describe("at a terminal", () => {
  it("serve says what it is and how it is used (the Claude Desktop entry, --demo, serve --http), in readable lines, then waits; Ctrl-C stops it", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const run = await onTerminal(home, ["serve"], [{ until: "Ctrl-C stops it", timeout: 60 }, { sleep: 0.5 }, { signal: "SIGINT" }]);
    expect(run.matched).toEqual([true]);
    expect(run.output).toContain("kitty-images is serving MCP on stdio: it waits for an MCP client");
    expect(run.output).toContain(`{"mcpServers":{"kitty-images":{"command":${JSON.stringify(process.execPath)},"args":[${JSON.stringify(SERVER_ENTRY)},"serve"]}}}`);
    expect(run.output).toContain("kitty-images serve --demo");
    expect(run.output).toContain("kitty-images serve --http");
    expect(run.output).toMatch(/^INFO kitty-images serving MCP on stdio /m);
    expect(run.output, "no JSON log lines for a person").not.toMatch(/^\{"level"/m);
    expect(run.exit).toBe(0);
  });

  it("serve --http prints where to go as plain lines", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const port = await freePort();
    const run = await onTerminal(home, ["serve", "--http", "--port", String(port)], [{ until: "Ctrl-C stops it", timeout: 60 }, { signal: "SIGINT" }]);
    expect(run.output).toContain(`kitty-images is serving on http://127.0.0.1:${port}`);
    expect(run.output).toContain(`  MCP (Streamable HTTP):  http://127.0.0.1:${port}/mcp`);
    expect(run.output).toContain(`  gallery:                http://127.0.0.1:${port}/gallery`);
    expect(run.exit).toBe(0);
  });

  it("serve --http on a port already taken fails at once, before a queued job starts", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const queued = await kitty(home, ["generate", "waits for a server", "--model", "tiny_sd15", "--width", "256", "--height", "256", "--steps", "2"]);
    const { jobId } = JSON.parse(queued.stdout);
    const port = await freePort();
    const holder = createServer().listen(port, "127.0.0.1");
    try {
      const run = await execa(process.execPath, [SERVER_ENTRY, "serve", "--http", "--port", String(port)], { env: serverEnv(home), extendEnv: false, reject: false, timeout: 60_000 });
      expect(run.exitCode).toBe(1);
      expect(run.stderr).toContain(`port ${port} on 127.0.0.1 is taken; pick another with --port`);
      expect(run.stderr).not.toContain("job running");
      expect(run.stderr).not.toContain("starting diffusers runner");
    } finally {
      holder.close();
    }
    // Still queued: a cancel drops it at once.
    const cancelled = await kitty(home, ["cancel", jobId]);
    expect(JSON.parse(cancelled.stdout)).toEqual({ jobId, status: "cancelled" });
  });

  it("Ctrl-C on generate --wait says it stopped waiting, puts the job back in the queue at once, and says how to cancel it", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const run = await onTerminal(home, ["generate", "stopped halfway", "--model", "tiny_sd15", "--width", "512", "--height", "512", "--steps", "150", "--wait"], [
      { until: "step [1-9]\\d*/150 .*\\| running", timeout: 120 },
      { signal: "SIGINT" },
    ]);
    expect(run.matched).toEqual([true]);
    expect(run.exit).toBe(130);
    const said = /stopped waiting for job ([0-9a-f-]{36}); it goes back to the queue now and runs when a kitty-images server on this data dir takes it \(kitty-images latest shows it once done; kitty-images cancel \1 drops it\)/.exec(run.output);
    expect(said, run.output.slice(-1000)).not.toBeNull();
    // The bar is cleared before the message: the message starts its own line.
    expect(run.output).toMatch(/\r?\nkitty-images: stopped waiting/);
    const cancelled = await kitty(home, ["cancel", said![1]!]);
    expect(JSON.parse(cancelled.stdout), "queued again, not left running").toEqual({ jobId: said![1], status: "cancelled" });
  });

  it("generate --wait's bar says what the job waits for (the runner starting, storage down), and log lines go above it whole", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    // Storage that does not answer: the image is made, then waits to be stored, and the worker warns about it.
    const run = await onTerminal(home, ["generate", "waits for storage", "--model", "tiny_sd15", "--width", "256", "--height", "256", "--steps", "8", "--wait"], [
      { until: "storage is unavailable", timeout: 120 },
      { sleep: 1 },
      { signal: "SIGINT" },
    ], { S3_ENDPOINT_URL: "http://127.0.0.1:9", S3_ACCESS_KEY: "none", S3_SECRET_KEY: "nonenone", KITTY_IMAGES_LOG_LEVEL: "warn" });
    expect(run.matched).toEqual([true]);
    expect(run.output).toMatch(/ETA [^|]*\| starting the runner, loading tiny_sd15\u001b/);
    expect(run.output).toMatch(/ETA [^|]*\| storage is unavailable \(cannot reach/);
    const warnings = [...run.output.matchAll(/WARN /g)];
    expect(warnings.length, run.output.slice(-1500)).toBeGreaterThan(0);
    for (const warning of warnings) {
      const before = run.output.slice(Math.max(0, warning.index! - 5), warning.index);
      expect(before, "a log line starts its own line, never glued onto the bar").toMatch(/(\r\u001b\[2K|\n)$/);
    }
    // Each redraw of the bar fits the terminal's 100 columns: what it waits for is cut, not the bar.
    for (const line of run.output.split(/\r|\n|\u001b\[1G/)) {
      if (line.includes("elapsed")) expect(line.replace(/\u001b(\[[0-9;?]*[A-Za-z]|[78])/g, "").length).toBeLessThanOrEqual(100);
    }
    expect(run.exit).toBe(130);
  });
});
