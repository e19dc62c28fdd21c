import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, inject, it } from "vitest";
import { startHttpServer } from "../helpers/httpServer.js";
import { execa } from "execa";
import { SERVER_ENTRY } from "../helpers/paths.js";
import { makeTestHome, serverEnv, startServer, waitForJob, type RunningServer } from "../helpers/server.js";
import { waitUntil } from "../helpers/waitUntil.js";

/** models.yaml is read again when it changes: the built server takes a valid edit and keeps serving through a broken one. */
describe("models.yaml live", () => {
  const servers: RunningServer[] = [];
  afterAll(async () => {
    for (const server of servers) await server.close();
  });

  const names = async (server: RunningServer) => ((await server.ok("list_models")).models as Array<{ name: string }>).map((model) => model.name);

  it("over stdio: an added model is listed and generates without a restart; a broken edit keeps the models served", async () => {
    const tiny = inject("tinyModelsDir");
    const home = await makeTestHome(tiny);
    const server = await startServer(home);
    servers.push(server);
    expect(await names(server)).not.toContain("tiny_added");
    appendFileSync(home.modelsYaml, `tiny_added:\n  path: ${path.join(tiny, "sd15")}\n  defaults: {width: 256, height: 256, steps: 2}\n`);
    await waitUntil("list_models shows the added model", async () => (await names(server)).includes("tiny_added"), { timeoutMs: 15_000, intervalMs: 200 });
    const queued = await server.ok("generate_image", { prompt: "from an edit", model: "tiny_added" });
    expect(queued).toMatchObject({ model: "tiny_added", width: 256, height: 256 });
    expect(await waitForJob(server, queued.jobId)).toMatchObject({ status: "done", model: "tiny_added" });

    const good = readFileSync(home.modelsYaml, "utf8");
    writeFileSync(home.modelsYaml, `${good}broken: /x\n  path: nope\n`);
    await waitUntil("the server logs the refused edit", () => readFileSync(server.logPath, "utf8").includes("models.yaml edit refused"), { timeoutMs: 15_000, intervalMs: 200 });
    expect(await names(server)).toContain("tiny_added");
    const log = readFileSync(server.logPath, "utf8");
    expect(log).toMatch(/is indented under line/);
    // A job already queued keeps the model it was resolved against, whatever the file says later.
    const again = await server.ok("generate_image", { prompt: "still served", model: "tiny_added" });
    writeFileSync(home.modelsYaml, good.replace(/tiny_added:[\s\S]*$/, ""));
    await waitUntil("the removed model is gone from list_models", async () => !(await names(server)).includes("tiny_added"), { timeoutMs: 15_000, intervalMs: 200 });
    expect(await waitForJob(server, again.jobId)).toMatchObject({ status: "done", model: "tiny_added" });
    const refused = await server.call("generate_image", { prompt: "gone", model: "tiny_added" });
    expect(refused.isError).toBe(true);
  });

  it("doctor on a broken models.yaml: a FAIL line that points at the line to fix, and what a running server does meanwhile", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    writeFileSync(home.modelsYaml, `tiny_sd15: /x\n  path: /y\n`);
    const run = await execa(process.execPath, [SERVER_ENTRY, "doctor"], { env: serverEnv(home, { KITTY_IMAGES_LOG_LEVEL: "warn" }), extendEnv: false, reject: false });
    expect(run.exitCode).toBe(1);
    expect(run.stdout).toMatch(/^FAIL {2}models\.yaml: .*line 2 \("path: \/y"\) is indented under line 1/);
    expect(run.stdout).toMatch(/keeps serving the models it read before/);
  });

  it("over HTTP: /healthz says why an edit was refused, names no path, and stays ok", async () => {
    const home = await makeTestHome(inject("tinyModelsDir"));
    const server = await startHttpServer(home);
    try {
      const before = await (await fetch(`${server.url}/healthz`)).json();
      expect(before.models).toMatchObject({ problem: null });
      const good = readFileSync(home.modelsYaml, "utf8");
      writeFileSync(home.modelsYaml, `${good}tiny_bad:\n  path: /x\n  engine: nonsense\n`);
      const report = await waitUntil("/healthz reports the refused edit", async () => {
        const body = await (await fetch(`${server.url}/healthz`)).json();
        return body.models?.problem && body;
      }, { timeoutMs: 15_000, intervalMs: 200 });
      expect(report.status).toBe(before.status);
      expect(report.models.problem.message).toMatch(/^models\.yaml/);
      expect(report.models.problem.message).toMatch(/tiny_bad/);
      expect(report.models.problem.message).not.toContain(home.home);
      expect(report.models.models).toBe(before.models.models);
      writeFileSync(home.modelsYaml, good);
      await waitUntil("/healthz clears the problem", async () => (await (await fetch(`${server.url}/healthz`)).json()).models.problem === null, { timeoutMs: 15_000, intervalMs: 200 });
    } finally {
      await server.stop();
    }
  });
});
