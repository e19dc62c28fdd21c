import { existsSync } from "node:fs";
import type { Config } from "../config.js";
import { messageOf } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import { AppEngine } from "../engines/appEngine.js";
import { DiffusersEngine } from "../engines/diffusers.js";
import { inspectEntry, inspectModelFolder, isSingleFile } from "../models/modelFolder.js";
import type { DatabaseFacts } from "../queue/ports.js";
import { describeQueueDatabase, queueIsShared } from "./createApp.js";
import { createEngine, createStore } from "./parts.js";

interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** What to do, on its own line under a FAIL. */
  fix?: string;
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
  const shared = queueIsShared(config);
  // The database in one look; on a shared queue also what the GPU workers registered (a front-end keeps no model
  // folders of its own).
  const database = await describeQueueDatabase(config, log).then(
    (facts) => ({ facts, problem: null }),
    (error: unknown) => ({ facts: null, problem: messageOf(error) }),
  );
  for (const entry of config.models.entries) {
    await check(`model ${entry.name}`, () => {
      const onDisk = inspectEntry(entry);
      const onWorkers = database.facts?.workers?.filter((worker) => worker.alive && worker.models.includes(entry.name)).map((worker) => worker.id) ?? [];
      if (!onDisk.present && onWorkers.length) return `not on this host; on live worker(s) ${onWorkers.join(", ")}`;
      // The same rule generate_image holds a request to (resolveRequest): a declared family lets the runner try it.
      if (!onDisk.present || (onDisk.problem && !entry.declaredFamily)) throw new Error(onDisk.problem ?? "not usable");
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
  // One line that says what to do about models not on this machine, under the last of them.
  const missing = checks.filter((entry) => entry.name.startsWith("model ") && !entry.ok && /does not exist|not on disk|no such/i.test(entry.detail));
  if (missing.length) {
    missing.at(-1)!.fix =
      `edit ${config.models.sourcePath} so each model names a folder or file on this machine, or set MODELS_YAML to a models.yaml of your own; ` +
      "kitty-images doctor --demo (and serve --demo, generate --demo) try tiny random-weight models first";
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
    if (!database.facts) throw new Error(database.problem);
    return describeDatabase(database.facts);
  });
  if (shared) {
    await check("workers", () => {
      const workers = database.facts?.workers;
      if (!database.facts) throw new Error("unknown: the database did not answer");
      if (!workers) return "unknown until the schema is upgraded (workers of an older version do not describe their models)";
      const live = workers.filter((worker) => worker.alive);
      const described = workers.map((worker) => `${worker.id} (${worker.alive ? (worker.runningJobId ? "busy" : "idle") : "silent"}${worker.device ? `, ${worker.device}` : ""}: ${worker.models.join(", ")})`);
      if (live.length === 0) {
        throw new Error(`no live GPU worker: queued jobs wait until one starts (kitty-images worker on a GPU host)${described.length ? `; registered: ${described.join("; ")}` : ""}`);
      }
      return described.join("; ");
    });
  }
  await check("storage", async () => {
    const store = createStore(config);
    await store.ensureReady();
    return store.kind === "s3" ? store.storageUri(config.keyPrefix) : `local folder ${store.storageUri(config.keyPrefix)}`;
  });
  // A front-end on a shared queue runs no jobs and keeps no model folders: its runner is not needed.
  const frontEndOnly = shared && !config.models.entries.some((entry) => entry.engine !== "diffusers" || inspectEntry(entry).present);
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

/** The database in one line: where, its jobs and images, and who runs the queue (SQLite). */
function describeDatabase(facts: DatabaseFacts): string {
  if (facts.schema === "none") return `${facts.location}: no tables yet (the first serve or worker creates them)`;
  if (facts.schema === "older") return `${facts.location}: schema ${facts.schemaVersion} of ${facts.schemaKnown} (the next serve or worker of this version upgrades it)`;
  const jobs = Object.entries(facts.counts ?? {}).filter(([, n]) => n > 0).map(([state, n]) => `${n} ${state}`).join(", ") || "no jobs";
  return `${facts.location}: ${jobs}; ${facts.images ?? 0} image(s)${facts.queueHolderPid ? `; queue run by pid ${facts.queueHolderPid}` : ""}`;
}

export function formatChecks(checks: Check[]): string {
  return checks.map((entry) => `${entry.ok ? "ok  " : "FAIL"}  ${entry.name}: ${entry.detail}${entry.fix ? `\n      fix: ${entry.fix}` : ""}`).join("\n");
}
