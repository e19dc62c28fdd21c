import { z } from "zod";
import { inspectModelFolder } from "../../models/modelFolder.js";
import { catalogWithEngineModels } from "../../models/engineCatalog.js";
import { defaultsFor, familyOf, familyOfElsewhere, familyTakes } from "../../models/familyRules.js";
import { inspectModel } from "../../models/resolveRequest.js";
import { modelsOfWorkers } from "../../models/workerModels.js";
import { CONTROL_TYPES, type EngineName, type ModelFamily } from "../../core/generation.js";
import type { ControlNetEntry } from "../../models/controlnetFiles.js";
import { FAMILIES } from "../../models/families.js";
import { matchCheckpoint } from "../../models/checkpointNames.js";
import { defineTool, type EngineModels } from "./toolKit.js";

export const listModels = defineTool({
  name: "list_models",
  icon: "M12 3l9 5-9 5-9-5zM3 13l9 5 9-5",
  description: "Models and LoRAs for generate_image: defaults, and what each model takes.",
  annotations: { readOnlyHint: true, openWorldHint: false },
  input: {},
  output: {
    engine: z.string(),
    defaultModel: z.string().nullable(),
    models: z.array(
      z.object({
        name: z.string(),
        engine: z.string(),
        family: z.string().nullable(),
        // generate_image's arguments this model takes beyond the prompt and sizes, and its schedulers.
        takes: z.array(z.string()).optional(),
        schedulers: z.array(z.string()).optional(),
        // The control map types its family's ControlNets in models.yaml's folder read.
        control: z.array(z.string()).optional(),
        present: z.boolean(),
        // Also `path` (the folder or the engine's name for it) and models.yaml's `description`, left out of the schema as tokens.
        problem: z.string().optional(),
        // {path, present} and {width, height, steps, cfgScale, scheduler, refiner}: typed loosely, as their names
        // say what they hold and tools/list is paid in tokens.
        refiner: z.record(z.string(), z.unknown()).nullable(),
        defaults: z.record(z.string(), z.unknown()).nullable(),
      }),
    ),
    loras: z.array(z.object({ name: z.string(), family: z.string().nullable(), problem: z.string().optional() })),
    // Also `upscalers` [{name, scale}] (upscale_image's mode esrgan) and `styles` [{name, prompt}] (generate_image's
    // style), left out of the schema as tokens: the summary names them.
  },
  async handler(_args, { config, engineModels, workers: registry }) {
    // tools/list is paid in tokens: the state says enough (the running job is job_status's business).
    const registered = registry ? await registry() : null;
    // On a shared queue a front-end keeps no model folders: what the workers report stands in for its disk.
    const onWorkers = registered ? modelsOfWorkers(registered) : undefined;
    const workers = registered && registered.map(({ id, device, models, modelInfo, alive, runningJobId }) => ({
      id,
      device,
      models,
      engines: [...new Set(models.map((model) => modelInfo[model]?.engine ?? "diffusers"))],
      state: !alive ? ("silent" as const) : runningJobId ? ("busy" as const) : ("idle" as const),
    }));
    const catalog = await catalogWithEngineModels(config.models, config.engine, engineModels, "all");
    // Each other engine is asked once, in parallel, with its own timeout: a dead web UI answers "not reachable", fast.
    const elsewhere = new Map<EngineName, EngineModels>(
      await Promise.all(
        [...new Set(catalog.entries.map((entry) => entry.engine).filter((engine) => engine !== "diffusers"))].map(
          async (engine) => [engine, await engineModels(engine)] as const,
        ),
      ),
    );
    const controlnets = catalog.controlnets();
    const models = catalog.entries.map((entry) => {
      const offered = elsewhere.get(entry.engine);
      if (offered) {
        const problem = !offered.reachable
          ? offered.problem
          : checkpointProblem(entry.engine, entry.engineModel, offered.models);
        const family = familyOfElsewhere(entry);
        return {
          name: entry.name,
          engine: entry.engine,
          family,
          present: problem === undefined,
          path: entry.engineModel ?? `(${entry.engine}'s loaded model)`,
          ...(problem && { problem }),
          ...(entry.description && { description: entry.description }),
          refiner: null,
          defaults: { ...defaultsFor(entry, family) },
        };
      }
      const onDisk = inspectModel(entry, onWorkers);
      const family = familyOf(entry, onDisk);
      return {
        name: entry.name,
        engine: entry.engine,
        family: entry.declaredFamily ?? onDisk.family,
        ...(family && { takes: familyTakes(FAMILIES[family]!), schedulers: [...FAMILIES[family]!.schedulers] }),
        ...(family && FAMILIES[family]!.pipelines.control && { control: controlTypesFor(controlnets, family) }),
        present: onDisk.present && !onDisk.unsupported,
        path: entry.path,
        ...(onDisk.problem && { problem: onDisk.problem }),
        ...(entry.description && { description: entry.description }),
        refiner: entry.refinerPath ? { path: entry.refinerPath, present: inspectModelFolder(entry.refinerPath).present || (onWorkers?.model(entry.name)?.refiner ?? false) } : null,
        defaults: family ? { ...defaultsFor(entry, family) } : null,
      };
    });
    const ready = models.filter((model) => model.present).map((model) => model.name);
    const local = catalog.loras().map(({ name, family, problem }) => ({ name, family, ...(problem && { problem }) }));
    // On a shared queue, the LoRAs live workers have that this host's folder lacks (a front-end keeps none).
    const onWorkersOnly = (registered ?? [])
      .filter((worker) => worker.alive)
      .flatMap((worker) => worker.loras)
      .filter((lora, at, all) => !local.some((own) => own.name === lora.name) && all.findIndex((other) => other.name === lora.name) === at);
    const loras = [...local, ...onWorkersOnly.map(({ name, family }) => ({ name, family }))];
    const upscalers = catalog.upscalers().map(({ name, scale, problem }) => ({ name, scale, ...(problem && { problem }) }));
    const styles = Object.entries(catalog.styles).map(([name, style]) => ({ name, prompt: style.prompt, ...(style.negative && { negative: style.negative }) }));
    return {
      structured: { engine: config.engine, defaultModel: catalog.defaultModel, models, loras, upscalers, styles, ...(workers && { workers }) },
      summary:
        (ready.length
          ? `${models.length} model(s); ready: ${ready.join(", ")}. Pass one as generate_image's model.` +
            (loras.length ? ` LoRAs: ${loras.map((lora) => `${lora.name} (${lora.family ?? "family unknown"})`).join(", ")}.` : "") +
            (upscalers.length ? ` Upscalers (upscale_image mode esrgan): ${upscalers.map((entry) => `${entry.name}${entry.scale ? ` (${entry.scale}x)` : ""}`).join(", ")}.` : "") +
            (styles.length ? ` Styles (generate_image's style): ${styles.map((style) => style.name).join(", ")}.` : "")
          : `${models.length} model(s) in ${catalog.sourcePath}, none ready: see each model's problem.`) +
        (workers ? ` ${workersLine(workers)}` : ""),
    };
  },
});

/**
 * On a Postgres queue: the same tool, whose answer also names the GPU workers, the models each has (its jobs run
 * only there) and whether it is idle, busy or silent. Registered only there, so a single machine's tools/list,
 * paid in tokens by every agent, does not carry it.
 */
export const listModelsWithWorkers = defineTool({
  ...listModels,
  output: {
    ...listModels.output,
    workers: z
      .array(z.object({ id: z.string(), device: z.string().nullable(), models: z.array(z.string()), engines: z.array(z.string()), state: z.enum(["idle", "busy", "silent"]) }))
      .optional(),
  },
});

/** The map types a family's ControlNets read: a union network reads them all. */
function controlTypesFor(controlnets: ControlNetEntry[], family: ModelFamily): string[] {
  const fitting = controlnets.filter((entry) => !entry.problem && entry.family === family);
  if (fitting.some((entry) => entry.type === "union")) return [...CONTROL_TYPES];
  return CONTROL_TYPES.filter((type) => fitting.some((entry) => entry.type === type));
}

/** One sentence on the GPU workers: who is free, who is busy, who went silent, and what each serves. */
function workersLine(workers: Array<{ id: string; device: string | null; models: string[]; state: "idle" | "busy" | "silent" }>): string {
  if (workers.length === 0) return "No GPU worker is registered: queued jobs wait until one starts (`kitty-images worker`).";
  const described = workers.map((worker) => `${worker.id} (${worker.state}${worker.device ? `, ${worker.device}` : ""}: ${worker.models.join(", ") || "no models"})`);
  return `Workers: ${described.join("; ")}.`;
}

/** Why another app's checkpoint named by an entry cannot be used: none of its checkpoints, or several, answer to the name. */
function checkpointProblem(engine: EngineName, named: string | null, offered: string[]): string | undefined {
  if (!named) return undefined;
  const matched = matchCheckpoint(named, offered);
  if (matched.length === 1) return undefined;
  return matched.length > 1
    ? `${engine} has several checkpoints '${named}' could mean (${matched.join(", ")}); name one in full`
    : `${engine} has no model '${named}' (it has: ${offered.join(", ") || "none"})`;
}
