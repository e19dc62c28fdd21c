import { ListObjectsV2Command, type S3Client } from "@aws-sdk/client-s3";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";
import { execa, type ResultPromise } from "execa";
import { appendFileSync, createWriteStream, mkdirSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createPgPool } from "../../src/db/postgres/pool.js";
import { s3ClientFor, startMinio, type MinioServer } from "../helpers/minio.js";
import { startHttpServer, type RunningHttpServer } from "../helpers/httpServer.js";
import { SERVER_ENTRY } from "../helpers/paths.js";
import { startPostgres, whyNoPostgres, type PostgresServer } from "../helpers/postgres.js";
import { isAlive, makeTestHome, s3Env, serverEnv, type TestHome } from "../helpers/server.js";
import { httpTaskClient } from "../helpers/taskClients.js";
import { errorText, toolCalls, type ToolCalls } from "../helpers/toolCalls.js";
import { waitUntil } from "../helpers/waitUntil.js";

/**
 * Scale-out as a studio runs it: two HTTP front-ends (`serve --http`, no runner) and three GPU workers
 * (`kitty-images worker`, the real runner with the tiny models), separate processes on loopback, one Postgres and
 * one MinIO. Everything is asked through the front-ends over MCP; the database is read only to see where jobs ran.
 */
const noPostgres = whyNoPostgres();
if (noPostgres) console.warn(`scaleOut: skipped, ${noPostgres}`);
const BUCKET = "kitty-scale-out";
const ENDED = ["done", "failed", "cancelled"];

interface FrontEnd extends ToolCalls {
  name: string;
  /** Its data dir: a worker started with it runs beside this front-end, as on one host. */
  home: TestHome;
  server: RunningHttpServer;
  client: Client;
}

describe.skipIf(noPostgres !== null)("two front-ends and three GPU workers on one Postgres queue", () => {
  let postgres: PostgresServer;
  let minio: MinioServer;
  let s3: S3Client;
  let pool: ReturnType<typeof createPgPool>;
  let a: FrontEnd;
  let b: FrontEnd;
  const workers = new Map<string, ResultPromise>();
  /** Each worker's own models.yaml and the folder its model links are in. */
  const workerFiles = new Map<string, { yaml: string; folders: string }>();
  /** What the front-ends answered when they refused a call (Postgres restarting): each must say why, as a typed error. */
  const refusals: string[] = [];
  /** Every job queued, and how it must end. */
  const queued = new Map<string, "done" | "cancelled">();

  const tiny = () => inject("tinyModelsDir");
  // The front-ends name every model but keep no folders (the paths are a Mac's, not here): the workers say what each
  // model is, and each worker runs a job with its own folder for the model's name.
  const frontEndModels = () => ["tiny_sd15", "tiny_sdxl", "tiny_sd15_b"].map((name) => `${name}: /Users/Shared/KITTY/models/${name}`).join("\n") + "\n";

  beforeAll(async () => {
    [postgres, minio] = await Promise.all([startPostgres(), startMinio()]);
    s3 = s3ClientFor(minio);
    pool = createPgPool(postgres.url, pino({ level: "silent" }), 2);
    a = await startFrontEnd("A");
    b = await startFrontEnd("B");
  }, 120_000);

  afterAll(async () => {
    for (const child of workers.values()) child.kill("SIGTERM");
    await Promise.all([...workers.values()].map((child) => child.catch(() => undefined)));
    for (const frontEnd of [a, b]) {
      await frontEnd?.client.close().catch(() => undefined);
      await frontEnd?.server.stop();
    }
    await pool?.end();
    s3?.destroy();
    await minio?.stop();
    await postgres?.stop();
  });

  async function startFrontEnd(name: string): Promise<FrontEnd> {
    const home = await makeTestHome(tiny());
    writeFileSync(home.modelsYaml, frontEndModels());
    const server = await startHttpServer(home, { ...s3Env(minio, BUCKET), KITTY_IMAGES_DATABASE_URL: postgres.url });
    const client = new Client({ name: `front-end-${name}`, version: "0" });
    await client.connect(new StreamableHTTPClientTransport(new URL(`${server.url}/mcp`)));
    return { name, home, server, client, ...toolCalls(client, () => `\n(front-end ${name}'s log: ${server.logPath})`) };
  }

  /** A worker host of its own (or, with `home`, beside a front-end on its host), started as `kitty-images worker`. */
  async function startWorker(id: string, models: Record<string, string>, home?: TestHome, withLoras = false): Promise<void> {
    const workerHome = home ?? (await makeTestHome(tiny()));
    const yaml = path.join(workerHome.home, `models-${id}.yaml`);
    // Each host keeps its models somewhere of its own: a link in its data dir to the tiny folder.
    const folders = path.join(workerHome.home, `models-of-${id}`);
    mkdirSync(folders);
    for (const folder of new Set([...Object.values(models), ...(withLoras ? ["loras"] : [])])) symlinkSync(path.join(tiny(), folder), path.join(folders, folder));
    const lines = Object.entries(models).map(([name, folder]) => `${name}: ${path.join(folders, folder)}`);
    writeFileSync(yaml, [...lines, ...(withLoras ? [`loras: ${path.join(folders, "loras")}`] : []), ""].join("\n"));
    workerFiles.set(id, { yaml, folders });
    const env = serverEnv({ ...workerHome, modelsYaml: yaml }, { ...s3Env(minio, BUCKET), KITTY_IMAGES_DATABASE_URL: postgres.url, KITTY_IMAGES_WORKER_ID: id, OMP_NUM_THREADS: "1" });
    const child = execa(process.execPath, [SERVER_ENTRY, "worker"], { env, extendEnv: false, reject: false, stdout: "ignore", stderr: "pipe" });
    child.stderr?.pipe(createWriteStream(path.join(workerHome.home, `worker-${id}.log`)));
    workers.set(id, child);
  }

  async function generate(frontEnd: FrontEnd, args: Record<string, unknown>, ends: "done" | "cancelled" = "done"): Promise<string> {
    const { jobId } = await frontEnd.ok("generate_image", { width: 256, height: 256, steps: 2, ...args });
    queued.set(jobId, ends);
    return jobId;
  }

  /** The job as a front-end reports it; undefined while that front-end cannot answer (Postgres restarting). */
  async function status(frontEnd: FrontEnd, jobId: string): Promise<Record<string, any> | undefined> {
    const result = await frontEnd.call("job_status", { jobId });
    if (result.isError) refusals.push(errorText(result));
    return result.isError ? undefined : (result.structuredContent as Record<string, any>);
  }

  async function allEnded(frontEnd: FrontEnd, jobIds: string[], timeoutMs: number): Promise<Record<string, any>[]> {
    return waitUntil(`${jobIds.length} jobs end, seen from front-end ${frontEnd.name}`, async () => {
      const states = await Promise.all(jobIds.map((jobId) => status(frontEnd, jobId)));
      return states.every((state) => state && ENDED.includes(state.status)) && (states as Record<string, any>[]);
    }, { timeoutMs, intervalMs: 500 });
  }

  async function ranOn(jobId: string): Promise<string | null> {
    return ((await pool.query(`SELECT worker_id FROM jobs WHERE id = $1`, [jobId])).rows[0]?.worker_id as string | null) ?? null;
  }

  async function listedKeys(frontEnd: FrontEnd): Promise<string[]> {
    const keys: string[] = [];
    let cursor: string | null = null;
    do {
      const page: Record<string, any> = await frontEnd.ok("list_latest_images", { limit: 50, ...(cursor && { cursor }) });
      keys.push(...page.images.map((image: { key: string }) => image.key));
      cursor = page.nextCursor;
    } while (cursor);
    return keys;
  }

  it("front-ends run no runner; list_models shows which worker serves which model and who is idle", async () => {
    await startWorker("big-box", { tiny_sd15: "sd15", tiny_sdxl: "sdxl" }, undefined, true);
    await startWorker("small-box", { tiny_sd15: "sd15" });
    await startWorker("beside-b", { tiny_sd15: "sd15", tiny_sd15_b: "sd15" }, b.home);
    // A worker registers at once and adds its device when its runner is up.
    const listed = await waitUntil("three workers registered, runners up", async () => {
      const models = await a.ok("list_models");
      return models.workers.length === 3 && models.workers.every((worker: { device: string | null }) => worker.device) && models;
    }, { timeoutMs: 90_000, intervalMs: 250 });
    expect(listed.workers.map(({ id, models, engines, state }: Record<string, unknown>) => ({ id, models, engines, state }))).toEqual([
      { id: "beside-b", models: ["tiny_sd15", "tiny_sd15_b"], engines: ["diffusers"], state: "idle" },
      { id: "big-box", models: ["tiny_sd15", "tiny_sdxl"], engines: ["diffusers"], state: "idle" },
      { id: "small-box", models: ["tiny_sd15"], engines: ["diffusers"], state: "idle" },
    ]);
    expect(listed.workers.map(({ device }: { device: string | null }) => device), "each worker's device, once its runner is up").toEqual(["cpu", "cpu", "cpu"]);
    // The LoRAs only big-box has, offered by a front-end that has no LoRA folder.
    expect(listed.loras).toEqual([
      { name: "tiny_sd15_detail", family: "sd15" },
      { name: "tiny_sdxl_detail", family: "sdxl" },
    ]);
    // Present and of a family on the front-end, which has none of the folders, because a worker has each.
    expect(listed.models.map(({ name, present, family }: Record<string, unknown>) => ({ name, present, family }))).toEqual([
      { name: "tiny_sd15", present: true, family: "sd15" },
      { name: "tiny_sdxl", present: true, family: "sdxl" },
      { name: "tiny_sd15_b", present: true, family: "sd15" },
    ]);
    // doctor on a front-end's host: the models are on the workers, the database and the workers answer.
    const doctor = await execa(process.execPath, [SERVER_ENTRY, "doctor"], {
      env: serverEnv(a.home, { ...s3Env(minio, BUCKET), KITTY_IMAGES_DATABASE_URL: postgres.url }),
      extendEnv: false,
      reject: false,
    });
    expect(doctor.stdout).toMatch(/^ok +model tiny_sdxl: not on this host; on live worker\(s\) big-box$/m);
    expect(doctor.stdout).toMatch(/^ok +database: Postgres 1\d\.\d+.* at postgres:\/\/kitty@127\.0\.0\.1:\d+\/kitty_test: no jobs; 0 image\(s\)$/m);
    expect(doctor.stdout).toMatch(/^ok +workers: beside-b \(idle, cpu: tiny_sd15, tiny_sd15_b\); big-box \(idle, cpu: tiny_sd15, tiny_sdxl\); small-box \(idle, cpu: tiny_sd15\)$/m);
    const health = await (await fetch(`${a.server.url}/healthz`)).json();
    expect(health).toMatchObject({ status: "ok", server: { runsJobs: false }, runner: { state: "none" }, workers: { live: 3, idle: 3 } });
    const metrics = await (await fetch(`${a.server.url}/metrics`)).text();
    expect(metrics).toMatch(/^kitty_images_workers\{state="idle"\} 3$/m);
    expect(metrics, "a front-end has no runner to report").not.toMatch(/kitty_images_runner_up/);
  });

  it("30 jobs from both front-ends spread over the workers, each done once; a model or LoRA only one worker has runs only there", async () => {
    const jobIds: string[] = [];
    const withLora = new Set<string>();
    for (let n = 0; n < 30; n++) {
      const frontEnd = n % 2 === 0 ? a : b;
      const model = n % 10 === 3 ? "tiny_sdxl" : n % 10 === 7 ? "tiny_sd15_b" : "tiny_sd15";
      const loras = n % 10 === 5 ? [{ name: "tiny_sd15_detail", weight: 0.5 }] : undefined;
      const jobId = await generate(frontEnd, { prompt: `job ${n} via ${frontEnd.name}`, model, seed: n, ...(loras && { loras }) });
      if (loras) withLora.add(jobId);
      jobIds.push(jobId);
    }
    // Each front-end reports the jobs the other queued.
    const ended = await allEnded(b, jobIds, 240_000);
    expect(ended.map((job) => job.status)).toEqual(jobIds.map(() => "done"));
    const where = await Promise.all(jobIds.map(ranOn));
    const byModel = (model: string) => new Set(where.filter((_, n) => ended[n]!.model === model));
    expect(byModel("tiny_sdxl")).toEqual(new Set(["big-box"]));
    expect(byModel("tiny_sd15_b")).toEqual(new Set(["beside-b"]));
    expect(new Set(where.filter((_, n) => withLora.has(jobIds[n]!))), "the LoRA jobs ran where the LoRA is").toEqual(new Set(["big-box"]));
    expect(new Set(where), "every worker ran jobs").toEqual(new Set(["big-box", "small-box", "beside-b"]));
    for (const job of ended) expect(job.images, `${job.prompt}: one image`).toHaveLength(1);
  });

  it("cancel from front-end A stops a job running on the worker beside front-end B, within a step or so", async () => {
    const jobId = await generate(b, { prompt: "cancelled from the other front-end", model: "tiny_sd15_b", steps: 150 }, "cancelled");
    await waitUntil("the long job runs on beside-b", async () => ((await status(a, jobId))?.progress?.step ?? 0) > 1, { timeoutMs: 60_000, intervalMs: 50 });
    expect(await ranOn(jobId)).toBe("beside-b");
    const startedCancel = Date.now();
    const cancelled = await a.ok("cancel_job", { jobId });
    expect(cancelled.status).toBe("cancelled");
    console.log(`scaleOut: cancel from A ended the job on beside-b in ${Date.now() - startedCancel} ms`);
    const after = await status(b, jobId);
    expect(after).toMatchObject({ status: "cancelled" });
    // beside-b is free again: the next job of its own model is done there.
    const next = await generate(a, { prompt: "after the cancel", model: "tiny_sd15_b" });
    expect((await allEnded(a, [next], 60_000))[0]).toMatchObject({ status: "done" });
    expect(await ranOn(next)).toBe("beside-b");
  });

  it("a worker killed mid-job loses it to another, which finishes it exactly once", async () => {
    const jobId = await generate(a, { prompt: "its worker dies", model: "tiny_sd15", steps: 150 });
    const victim = await waitUntil("the long job reports steps", async () => ((await status(b, jobId))?.progress?.step ?? 0) > 0 && (await ranOn(jobId)), {
      timeoutMs: 60_000,
      intervalMs: 50,
    });
    const pid = workers.get(victim)!.pid!;
    process.kill(pid, "SIGKILL");
    await waitUntil("the killed worker is gone", () => !isAlive(pid), { timeoutMs: 10_000, intervalMs: 50 });
    workers.delete(victim);
    const [job] = await allEnded(b, [jobId], 120_000);
    expect(job).toMatchObject({ status: "done" });
    expect(job!.images).toHaveLength(1);
    const row = (await pool.query(`SELECT attempts, worker_id FROM jobs WHERE id = $1`, [jobId])).rows[0];
    expect(row.attempts).toBe(2);
    expect(row.worker_id).not.toBe(victim);
    const models = await b.ok("list_models");
    expect(models.workers.find((worker: { id: string }) => worker.id === victim)?.state).toBe("silent");
  });

  it("Postgres restarted mid-run: front-ends and workers reconnect; no acknowledged job is lost", async () => {
    const model = "tiny_sd15"; // two of its three workers are still up
    const before: string[] = [];
    for (let n = 0; n < 6; n++) before.push(await generate(n % 2 ? a : b, { prompt: `through a restart ${n}`, model, steps: 30 }));
    await waitUntil("a job runs", async () => ((await status(a, before[0]!))?.progress?.step ?? 0) > 0, { timeoutMs: 60_000, intervalMs: 50 });
    // Front-end A is asked all through the restart, so some calls land while Postgres is down.
    let restarting = true;
    const probing = (async () => {
      while (restarting) {
        await status(a, before[0]!);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })();
    await postgres.restart().finally(() => (restarting = false));
    await probing;
    expect(refusals.length, "calls made while Postgres was down were refused").toBeGreaterThan(0);
    // Both front-ends answer again and queue new work; a call refused meanwhile says the database is not answering.
    const queueAgain = (frontEnd: FrontEnd) =>
      waitUntil(`front-end ${frontEnd.name} queues again`, () => generate(frontEnd, { prompt: `after the restart via ${frontEnd.name}`, model }).catch((error: Error) => void refusals.push(error.message)), {
        timeoutMs: 30_000,
        intervalMs: 250,
      });
    const after = [await queueAgain(a), await queueAgain(b)];
    const ended = await allEnded(a, [...before, ...after], 180_000);
    expect(ended.map((job) => job.status)).toEqual([...before, ...after].map(() => "done"));
    console.log(`scaleOut: ${refusals.length} call(s) refused while Postgres restarted`);
    for (const refusal of refusals) expect(refusal).toMatch(/database_unavailable: .* the job database \(Postgres\) is not answering/);
  });

  it("a front-end restarted mid-run loses nothing: the jobs it queued run on, and the new one reports them", async () => {
    const jobIds: string[] = [];
    for (let n = 0; n < 3; n++) jobIds.push(await generate(b, { prompt: `queued before B restarts ${n}`, model: "tiny_sd15", steps: 30 }));
    await waitUntil("one of them runs", async () => ((await status(a, jobIds[0]!))?.progress?.step ?? 0) > 0, { timeoutMs: 60_000, intervalMs: 50 });
    await b.client.close();
    await b.server.stop();
    b = await startFrontEnd("B");
    const ended = await allEnded(b, jobIds, 120_000);
    expect(ended.map((job) => job.status)).toEqual(["done", "done", "done"]);
  });

  it("models.yaml edits apply live: a worker advertises a model it was given, front-ends route it there; a task opened on A is followed on B", async () => {
    const [id] = [...workers.keys()];
    const { yaml, folders } = workerFiles.get(id!)!;
    appendFileSync(yaml, `tiny_sd15_c: ${path.join(folders, "sd15")}\n`);
    for (const frontEnd of [a, b]) appendFileSync(frontEnd.home.modelsYaml, "tiny_sd15_c: /Users/Shared/KITTY/models/tiny_sd15_c\n");
    await waitUntil(`worker ${id} advertises tiny_sd15_c, seen from front-end A`, async () => {
      const listed = await a.ok("list_models");
      return listed.workers.find((worker: { id: string }) => worker.id === id)?.models.includes("tiny_sd15_c") && listed.models.some((model: { name: string; present: boolean }) => model.name === "tiny_sd15_c" && model.present);
    }, { timeoutMs: 30_000, intervalMs: 250 });
    const jobId = await generate(b, { prompt: "a model added by an edit", model: "tiny_sd15_c" });
    expect((await allEnded(b, [jobId], 120_000))[0]).toMatchObject({ status: "done", model: "tiny_sd15_c" });
    expect(await ranOn(jobId)).toBe(id);

    // A task is the shared queue's: opened through one front-end, followed and finished through the other.
    const onA = await httpTaskClient(a.server.url);
    const onB = await httpTaskClient(b.server.url);
    try {
      const execution = await onA.session.callTool("generate_image", { prompt: "a task across front-ends", model: "tiny_sd15", width: 256, height: 256, steps: 2 });
      expect(execution.kind).toBe("task");
      const taskId = execution.handle!.taskId;
      queued.set(taskId, "done");
      if (execution.kind === "task") await execution.handoff(() => undefined);
      const resumed = await onB.session.resumeTask({ endpointId: "kitty-images-http", generation: "v2", taskId, originalOperation: "tools/call" });
      const { outcome } = await resumed.settle();
      expect(outcome.status).toBe("completed");
      expect((outcome as { result: any }).result.structuredContent).toMatchObject({ jobId: taskId, status: "done" });
    } finally {
      await onA.client.close().catch(() => undefined);
      await onB.close();
    }
  });

  it("exactly once: every done job has one image in the bucket, listed once by each front-end", async () => {
    const jobIds = [...queued.keys()];
    const ended = await allEnded(a, jobIds, 60_000);
    expect(ended.map((job) => job.status)).toEqual(jobIds.map((jobId) => queued.get(jobId)));
    const keys = ended.flatMap((job) => (job.images ?? []).map((image: { key: string }) => image.key));
    expect(keys).toHaveLength([...queued.values()].filter((ends) => ends === "done").length);
    const listing = await s3.send(new ListObjectsV2Command({ Bucket: BUCKET }));
    const pngs = (listing.Contents ?? []).map((object) => object.Key!).filter((key) => key.endsWith(".png"));
    expect(pngs.sort()).toEqual([...keys].sort());
    for (const frontEnd of [a, b]) {
      const listed = await listedKeys(frontEnd);
      expect(listed.length, `front-end ${frontEnd.name} lists each image once`).toBe(new Set(listed).size);
      expect(listed.sort()).toEqual([...keys].sort());
    }
  });
});
