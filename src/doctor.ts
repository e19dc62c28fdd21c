import { existsSync } from "node:fs";
import type { Config } from "./config.js";
import { openDatabase } from "./db.js";
import { AppEngine } from "./engines/appEngine.js";
import { DiffusersEngine } from "./engines/diffusers.js";
import { messageOf } from "./errors.js";
import type { Logger } from "./log.js";
import { inspectModelFolder, isSingleFile } from "./models/modelFolder.js";
import { JobStore } from "./queue/jobStore.js";
import { WorkerLease } from "./queue/workerLease.js";
import { createEngine, createStore } from "./server.js";

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
  for (const entry of config.models.entries) {
    await check(`model ${entry.name}`, () => {
      const onDisk = inspectModelFolder(entry.path);
      if (!onDisk.present || onDisk.problem) throw new Error(onDisk.problem ?? "not usable");
      const refiner = entry.refinerPath ? inspectModelFolder(entry.refinerPath) : null;
      if (refiner && !refiner.present) throw new Error(`refiner: ${refiner.problem}`);
      const singleFile = isSingleFile(entry.path) && !entry.configPath;
      if (singleFile && !existsSync(config.runner.clipVocab)) {
        throw new Error(`a single-file checkpoint needs CLIP's tokenizer vocabulary at ${config.runner.clipVocab}: run npm run setup`);
      }
      return `${onDisk.family ?? "family read on load"} at ${entry.path}${entry.refinerPath ? ` (refiner ${entry.refinerPath})` : ""}`;
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
  await check("database", () => {
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
  await check("runner", async () => {
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

export function formatChecks(checks: Check[]): string {
  return checks.map((entry) => `${entry.ok ? "ok  " : "FAIL"}  ${entry.name}: ${entry.detail}`).join("\n");
}
