import { existsSync } from "node:fs";
import type { Config } from "../config.js";
import { openDatabase } from "../db/sqlite/database.js";
import { AppEngine } from "../engines/appEngine.js";
import { DiffusersEngine } from "../engines/diffusers.js";
import { messageOf } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { inspectEntry, inspectModelFolder, isSingleFile } from "../models/modelFolder.js";
import { JobStore } from "../db/sqlite/jobs.js";
import type { WorkerInfo } from "../db/postgres/jobs.js";
import { WorkerLease } from "../db/sqlite/lease.js";
import { createEngine, createStore } from "./createApp.js";

interface Check {
  name: string;
  ok: boolean;
  detail: string;
}

/** `kitty-images doctor`: checks each part the server needs and says what to fix. Exit code 1 if any fails. */
export async function runDoctor(config: Config, log: Logger): Promise<Check[]> {
  const checks: Check[] = [];
  const check = async (name: string, run: () => Promise<string> | string) => {
    try {
      checks.push({ name, ok: true, detail: await run() });
    } catch (error) {
      checks.push({ name, ok: false, detail: messageOf(error) });
    }
  };

  await check("models.yaml", () => {
    const entries = config.models.entries;
    if (entries.length === 0) throw new Error(`${config.models.sourcePath} lists no models`);
    return `${config.models.sourcePath}: ${entries.length} model(s), default ${config.models.defaultModel}`;
  });
  // On a shared Postgres queue, what the GPU workers registered: a front-end keeps no model folders of its own.
  const registered = config.databaseUrl ? await registeredWorkers(config.databaseUrl, log) : null;
  for (const entry of config.models.entries) {
    await check(`model ${entry.name}`, () => {
      const onDisk = inspectEntry(entry);
      const onWorkers = registered?.workers?.filter((worker) => worker.alive && worker.models.includes(entry.name)).map((worker) => worker.id) ?? [];
      if (!onDisk.present && onWorkers.length) return `not on this host; on live worker(s) ${onWorkers.join(", ")}`;
      if (!onDisk.present || onDisk.problem) throw new Error(onDisk.problem ?? "not usable");
      const refiner = entry.refinerPath ? inspectModelFolder(entry.refinerPath) : null;
      if (refiner && !refiner.present) throw new Error(`refiner: ${refiner.problem}`);
      // A transformer-only file takes its tokenizers from its base folder.
      const singleFile = isSingleFile(entry.path) && !entry.configPath && !entry.basePath;
      if (singleFile && !existsSync(config.runner.clipVocab)) {
        throw new Error(`a single-file checkpoint needs CLIP's tokenizer vocabulary at ${config.runner.clipVocab}: run npm run setup`);
      }
      return `${onDisk.family ?? "family read on load"} at ${entry.path}${entry.basePath ? ` (base ${entry.basePath})` : ""}${entry.refinerPath ? ` (refiner ${entry.refinerPath})` : ""}`;
    });
  }
  if (config.models.lorasDir) {
    await check("loras", () => {
      const loras = config.models.loras();
      if (!existsSync(config.models.lorasDir!)) throw new Error(`folder ${config.models.lorasDir} does not exist`);
      const unreadable = loras.filter((lora) => lora.problem);
      if (unreadable.length) throw new Error(unreadable.map((lora) => `${lora.name}: ${lora.problem}`).join("; "));
      return `${loras.length} LoRA(s) in ${config.models.lorasDir}`;
    });
  }
  if (config.databaseUrl && registered) {
    const { summary, workers, problem } = registered;
    await check("database", () => {
      if (problem) throw new Error(problem);
      return summary;
    });
    await check("workers", () => {
      if (problem) throw new Error("unknown: the database did not answer");
      if (!workers) return "unknown until the schema is upgraded (workers of an older version do not describe their models)";
      const live = workers.filter((worker) => worker.alive);
      const described = workers.map((worker) => `${worker.id} (${worker.alive ? (worker.runningJobId ? "busy" : "idle") : "silent"}${worker.device ? `, ${worker.device}` : ""}: ${worker.models.join(", ")})`);
      if (live.length === 0) {
        throw new Error(`no live GPU worker: queued jobs wait until one starts (kitty-images worker on a GPU host)${described.length ? `; registered: ${described.join("; ")}` : ""}`);
      }
      return described.join("; ");
    });
  } else await check("database", () => {
    const db = openDatabase(config.databasePath);
    try {
      const counts = Object.entries(new JobStore(db).countByState()).filter(([, n]) => n > 0);
      const images = (db.prepare(`SELECT COUNT(*) AS n FROM images`).get() as { n: number }).n;
      const holder = new WorkerLease(db).holder();
      const jobs = counts.map(([state, n]) => `${n} ${state}`).join(", ") || "no jobs";
      return `${config.databasePath}: ${jobs}; ${images} image(s)${holder ? `; queue run by pid ${holder.pid}` : ""}`;
    } finally {
      db.close();
    }
  });
  await check("storage", async () => {
    const store = createStore(config);
    await store.ensureReady();
    return store.kind === "s3" ? store.storageUri(config.keyPrefix) : `local folder ${store.storageUri(config.keyPrefix)}`;
  });
  // A front-end on a shared queue runs no jobs and keeps no model folders: its runner is not needed.
  const frontEndOnly = config.databaseUrl !== null && !config.models.entries.some((entry) => entry.engine !== "diffusers" || inspectEntry(entry).present);
  await check("runner", async () => {
    if (frontEndOnly) return "not needed here: this host has no model folders, so it only queues and lists (the GPU workers run the runner)";
    const router = createEngine(config, log);
    const engine = router.engine(router.defaultEngine);
    try {
      if (engine instanceof AppEngine) {
        // Another app does the generating: it answers, and offers these models.
        const models = await engine.models();
        return `${engine.name} answers; ${models.length} model(s)${models.length ? `: ${models.slice(0, 5).join(", ")}${models.length > 5 ? ", …" : ""}` : ""}`;
      }
      await engine.start();
      const info = engine instanceof DiffusersEngine ? engine.info : null;
      return info
        ? `${info.device} ${info.dtype}; python ${info.versions.python}, torch ${info.versions.torch}, diffusers ${info.versions.diffusers}, transformers ${info.versions.transformers}`
        : `${engine.name} started`;
    } finally {
      await router.stop();
    }
  });
  return checks;
}

/** The shared queue's state in one look: the database, its jobs and images, and the workers registered. */
async function registeredWorkers(url: string, log: Logger): Promise<{ summary: string; workers: WorkerInfo[] | null; problem: string | null }> {
  const { createPgPool } = await import("../db/postgres/pool.js");
  const { PG_MIGRATIONS, PgJobStore } = await import("../db/postgres/jobs.js");
  const { redactedUrl, STALE_MS } = await import("./postgresApp.js");
  const pool = createPgPool(url, log, 1);
  try {
    const version = (await pool.query<{ server_version: string }>("SHOW server_version")).rows[0]!.server_version;
    const where = `Postgres ${version} at ${redactedUrl(url)}`;
    if ((await pool.query<{ jobs: string | null }>(`SELECT to_regclass('jobs') AS jobs`)).rows[0]!.jobs === null) {
      return { summary: `${where}: no tables yet (the first serve or worker creates them)`, workers: [], problem: null };
    }
    const schema = Number((await pool.query(`SELECT version FROM kitty_schema`)).rows[0]?.version ?? 0);
    if (schema < PG_MIGRATIONS.length) {
      return { summary: `${where}: schema ${schema} of ${PG_MIGRATIONS.length} (the next serve or worker of this version upgrades it)`, workers: null, problem: null };
    }
    const jobs = new PgJobStore(pool);
    const counts = Object.entries(await jobs.countByState()).filter(([, n]) => n > 0);
    const images = Number((await pool.query(`SELECT count(*) AS n FROM images`)).rows[0].n);
    const workers = await jobs.workers(STALE_MS);
    const summary = `${where}: ${counts.map(([state, n]) => `${n} ${state}`).join(", ") || "no jobs"}; ${images} image(s)`;
    return { summary, workers, problem: null };
  } catch (error) {
    return { summary: "", workers: null, problem: `cannot reach Postgres at ${redactedUrl(url)} (KITTY_IMAGES_DATABASE_URL): ${messageOf(error)}` };
  } finally {
    await pool.end().catch(() => undefined);
  }
}

export function formatChecks(checks: Check[]): string {
  return checks.map((entry) => `${entry.ok ? "ok  " : "FAIL"}  ${entry.name}: ${entry.detail}`).join("\n");
}
