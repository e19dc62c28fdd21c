// models.yaml end to end in one file: its entry schema, its parsing and the catalog that serves it change together
// (a new key touches all three); what the folders it names hold is read in loraFiles, controlnetFiles, upscalerFiles.
import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { parseDocument } from "yaml";
import { yamlProblem } from "./yamlProblem.js";
import { matchCheckpoint } from "./checkpointNames.js";
import { parseStyles, STYLES_KEY, type PromptStyle } from "./styles.js";
import { z } from "zod";
import { KittyError } from "../core/errors.js";
import { loadWorkflow } from "./comfyWorkflow.js";
import { HUB_PREFIX, locateHubModel } from "./hubCache.js";
import { listControlNets, type ControlNetEntry } from "./controlnetFiles.js";
import { listLoras, type LoraEntry } from "./loraFiles.js";
import { listUpscalers, type UpscalerEntry } from "./upscalerFiles.js";
import { isSingleFile } from "./modelFolder.js";
import { ENGINE_NAMES, LIMITS, SCHEDULERS, type EngineName, type GenerationDefaults, type ModelFamily } from "../core/generation.js";
import { MODEL_FAMILIES } from "./families.js";

/**
 * models.yaml: the original images-service's flat map (`name: /path/to/diffusers-folder`) with richer
 * entries allowed beside it. The first entry is the default model unless KITTY_IMAGES_DEFAULT_MODEL says otherwise.
 */
export interface ModelEntry {
  name: string;
  /** The engine that runs it: `engine:` in models.yaml, else IMAGE_ENGINE. */
  engine: EngineName;
  /** The engine's own name for the model (an AUTOMATIC1111 checkpoint title); null: whatever it has loaded. */
  engineModel: string | null;
  /** A diffusers folder or checkpoint file; empty for a model another engine keeps. */
  path: string;
  /** Declared in models.yaml; otherwise read from the folder's model_index.json when asked. */
  declaredFamily: ModelFamily | null;
  refinerPath: string | null;
  /** Single-file checkpoints: a diffusers folder to take configs and tokenizers from (default: the shipped ones). */
  configPath: string | null;
  /** A transformer-only (or UNet-only) single file: the diffusers folder that supplies the rest of its pipeline. */
  basePath?: string | null;
  /** ComfyUI: an API-format workflow file of the user's own, used instead of the built-in graph. */
  workflowPath?: string | null;
  defaults: Partial<GenerationDefaults>;
  description: string | null;
}

const size = z.number().int().min(LIMITS.size.min).max(LIMITS.size.max).multipleOf(LIMITS.size.multipleOf);

const richEntrySchema = z
  .object({
    // Required for the diffusers engine, checked below: another engine names its model with `model`.
    path: z.string().min(1).optional(),
    engine: z.enum(ENGINE_NAMES).optional(),
    model: z.string().min(1).optional(),
    family: z.enum(MODEL_FAMILIES).optional(),
    refiner: z.string().min(1).optional(),
    config: z.string().min(1).optional(),
    base: z.string().min(1).optional(),
    workflow: z.string().min(1).optional(),
    description: z.string().optional(),
    // the same limits generate_image enforces, so a default can never make a job the tool would refuse
    defaults: z
      .object({
        width: size.optional(),
        height: size.optional(),
        steps: z.number().int().min(LIMITS.steps.min).max(LIMITS.steps.max).optional(),
        cfg_scale: z.number().min(LIMITS.cfgScale.min).max(LIMITS.cfgScale.max).optional(),
        scheduler: z.enum(SCHEDULERS).optional(),
        refiner: z.boolean().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const entrySchema = z.union([z.string().min(1), richEntrySchema]);

/** The keys in models.yaml that are not models: the folders LoRA files, ControlNets and upscalers are read from. */
export const LORAS_KEY = "loras";
export const CONTROLNETS_KEY = "controlnets";
export const UPSCALERS_KEY = "upscalers";
const FOLDER_KEYS: Record<string, string> = { [CONTROLNETS_KEY]: "diffusers ControlNet folders", [UPSCALERS_KEY]: "ESRGAN .pth or .safetensors files" };

export class ModelCatalog {
  // One object per process that its holders keep: a models.yaml edit swaps what it holds (adopt), so the tools, the
  // gallery and the worker all see the new models at once without being handed a new catalog.
  #held: {
    entries: ModelEntry[];
    defaultModel: string | null;
    sourcePath: string | null;
    lorasDir: string | null;
    controlnetsDir: string | null;
    upscalersDir: string | null;
    styles: Readonly<Record<string, PromptStyle>>;
  };

  constructor(
    entries: ModelEntry[],
    defaultModel: string | null,
    sourcePath: string | null,
    lorasDir: string | null = null,
    controlnetsDir: string | null = null,
    upscalersDir: string | null = null,
    styles: Readonly<Record<string, PromptStyle>> = {},
  ) {
    this.#held = { entries, defaultModel, sourcePath, lorasDir, controlnetsDir, upscalersDir, styles };
  }

  get entries(): ModelEntry[] {
    return this.#held.entries;
  }
  get defaultModel(): string | null {
    return this.#held.defaultModel;
  }
  get sourcePath(): string | null {
    return this.#held.sourcePath;
  }
  get lorasDir(): string | null {
    return this.#held.lorasDir;
  }
  get controlnetsDir(): string | null {
    return this.#held.controlnetsDir;
  }
  get upscalersDir(): string | null {
    return this.#held.upscalersDir;
  }
  /** models.yaml's `styles:` (prompt templates by name), for generate_image's `style` and KITTY's UI. */
  get styles(): Readonly<Record<string, PromptStyle>> {
    return this.#held.styles;
  }

  /** Serves `next`'s models from now on (a live models.yaml reload). A job already queued keeps the model it was resolved against. */
  adopt(next: ModelCatalog): void {
    this.#held = next.#held;
  }

  upscalers(): UpscalerEntry[] {
    return this.upscalersDir ? listUpscalers(this.upscalersDir) : [];
  }

  /** Read from the folder each time, like the LoRAs. */
  controlnets(): ControlNetEntry[] {
    return this.controlnetsDir ? listControlNets(this.controlnetsDir) : [];
  }

  /** Read from the folder each time: a LoRA dropped in is usable without a restart. */
  loras(): LoraEntry[] {
    return this.lorasDir ? listLoras(this.lorasDir) : [];
  }

  lora(name: string): LoraEntry {
    const all = this.loras();
    const entry = all.find((candidate) => candidate.name === name);
    if (!entry) {
      const where = this.lorasDir ? `in ${this.lorasDir}` : `configured: add 'loras: /path/to/lora-folder' to models.yaml`;
      const known = all.length ? ` (known: ${all.map((lora) => lora.name).join(", ")})` : "";
      throw new KittyError("unknown_lora", `no LoRA '${name}' ${where}${known}`);
    }
    return entry;
  }

  names(): string[] {
    return this.entries.map((entry) => entry.name);
  }

  /**
   * The entry by its name, or an entry on another app (A1111, ComfyUI) by any name that app knows its checkpoint by
   * (checkpointNames.ts): the entry's own name stays the one shown and recorded. A name two checkpoints answer to is refused.
   */
  get(name: string): ModelEntry {
    const entry = this.entries.find((candidate) => candidate.name === name);
    if (entry) return entry;
    const elsewhere = this.entries.filter((candidate) => candidate.engine !== "diffusers" && candidate.engineModel !== null);
    const matched = elsewhere.filter((candidate) => matchCheckpoint(name, [candidate.engineModel!]).length > 0);
    if (matched.length === 1) return matched[0]!;
    if (matched.length > 1) {
      throw new KittyError("unknown_model", `model '${name}' could be any of ${matched.map((candidate) => `'${candidate.name}'`).join(", ")}; name one of them in full`);
    }
    const known = this.names().join(", ") || "none: models.yaml is empty";
    throw new KittyError("unknown_model", `model '${name}' is not in models.yaml (known: ${known})`);
  }
}

function expandPath(raw: string, baseDir: string, hubCache?: string): string {
  const hub = hubCache === undefined ? null : locateHubModel(raw, hubCache);
  if (hub !== null || raw.startsWith(HUB_PREFIX)) return hub ?? raw;
  const expanded = raw.startsWith("~/") ? path.join(homedir(), raw.slice(2)) : raw;
  return path.resolve(baseDir, expanded);
}

/**
 * `hubCache`: the Hugging Face cache that `hf:org/name` entries are looked up in. `defaultEngine` (IMAGE_ENGINE)
 * runs entries that name none; under another engine a flat entry's value is that engine's model name.
 */
export function parseModelsYaml(text: string, sourcePath: string, defaultModel?: string, hubCache?: string, defaultEngine: EngineName = "diffusers"): ModelCatalog {
  const baseDir = path.dirname(sourcePath);
  const parsed = parseDocument(text);
  if (parsed.errors.length) throw new KittyError("config_invalid", `${sourcePath} is not valid YAML: ${yamlProblem(parsed.errors, text)}`);
  const document: unknown = parsed.toJS() ?? {};
  if (typeof document !== "object" || document === null || Array.isArray(document)) {
    throw new KittyError("config_invalid", `${sourcePath} must be a map of model name to folder (or to an entry with a path)`);
  }
  const raw = document as Record<string, unknown>;
  const entries: ModelEntry[] = [];
  let lorasDir: string | null = null;
  const folders: Record<string, string> = {};
  let styles: Record<string, PromptStyle> = {};
  for (const [name, value] of Object.entries(raw)) {
    if (name === STYLES_KEY) {
      styles = parseStyles(value, sourcePath);
      continue;
    }
    if (FOLDER_KEYS[name]) {
      if (typeof value !== "string" || !value) throw new KittyError("config_invalid", `${sourcePath}: '${name}' must be a folder of ${FOLDER_KEYS[name]} ('${name}: /path/to/${name}')`);
      folders[name] = expandPath(value, baseDir);
      continue;
    }
    if (name === LORAS_KEY) {
      if (typeof value !== "string" || !value) {
        throw new KittyError("config_invalid", `${sourcePath}: '${LORAS_KEY}' must be a folder of .safetensors LoRA files ('${LORAS_KEY}: /path/to/loras')`);
      }
      lorasDir = expandPath(value, baseDir);
      continue;
    }
    const parsed = entrySchema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue?.path.length ? `.${issue.path.join(".")}` : "";
      throw new KittyError(
        "config_invalid",
        `${sourcePath}: entry '${name}${where}' is invalid (${issue?.message}); use 'name: /path/to/diffusers-folder-or-checkpoint' or 'name: {path, family?, refiner?, config?, base?, defaults?}' or 'name: {engine: a1111|comfyui|invokeai, model?, workflow?, family?, defaults?}'`,
      );
    }
    const entry = parsed.data;
    const blank = { declaredFamily: null, refinerPath: null, configPath: null, defaults: {}, description: null };
    if (typeof entry === "string") {
      entries.push(
        defaultEngine === "diffusers"
          ? { name, engine: defaultEngine, engineModel: null, path: expandPath(entry, baseDir, hubCache), ...blank }
          : { name, engine: defaultEngine, engineModel: entry, path: "", ...blank },
      );
      continue;
    }
    const engine = entry.engine ?? defaultEngine;
    if (engine === "diffusers" && entry.model !== undefined) {
      throw new KittyError("config_invalid", `${sourcePath}: entry '${name}' gives 'model', which names a model another engine keeps; add 'engine: a1111' (or comfyui, invokeai) or drop it`);
    }
    if (engine === "diffusers" && entry.path === undefined) {
      throw new KittyError("config_invalid", `${sourcePath}: entry '${name}' needs a path (a diffusers folder or checkpoint file), or 'engine: a1111|comfyui|invokeai' with that app's 'model' name`);
    }
    if (entry.workflow !== undefined && engine !== "comfyui") {
      throw new KittyError("config_invalid", `${sourcePath}: entry '${name}' gives a workflow, which only ComfyUI runs: add 'engine: comfyui'`);
    }
    if (entry.base !== undefined && (engine !== "diffusers" || entry.path === undefined || !isSingleFile(entry.path))) {
      throw new KittyError("config_invalid", `${sourcePath}: entry '${name}' gives a base, which goes with a path to one .safetensors file holding a transformer (or UNet) alone: the base folder supplies the rest`);
    }
    // Checked now, so a workflow that cannot be filled is a start-up error, not every job's failure.
    if (entry.workflow !== undefined) loadWorkflow(expandPath(entry.workflow, baseDir));
    if (engine !== "diffusers" && (entry.refiner || entry.config !== undefined || entry.path !== undefined)) {
      throw new KittyError("config_invalid", `${sourcePath}: entry '${name}' runs on ${engine}, which keeps its own models: give 'model' (its name there), not path, refiner or config`);
    }
    // A refiner may name another entry or give a folder.
    const refinerRef = entry.refiner;
    const refinerTarget = refinerRef === undefined ? null : raw[refinerRef];
    const refinerPath =
      refinerRef === undefined
        ? null
        : typeof refinerTarget === "string"
          ? expandPath(refinerTarget, baseDir, hubCache)
          : expandPath(refinerRef, baseDir, hubCache);
    const d = entry.defaults ?? {};
    entries.push({
      name,
      engine,
      engineModel: entry.model ?? null,
      path: entry.path === undefined ? "" : expandPath(entry.path, baseDir, hubCache),
      declaredFamily: entry.family ?? null,
      refinerPath,
      configPath: entry.config ? expandPath(entry.config, baseDir) : null,
      ...(entry.base !== undefined && { basePath: expandPath(entry.base, baseDir, hubCache) }),
      ...(entry.workflow !== undefined && { workflowPath: expandPath(entry.workflow, baseDir) }),
      description: entry.description ?? null,
      defaults: {
        ...(d.width !== undefined && { width: d.width }),
        ...(d.height !== undefined && { height: d.height }),
        ...(d.steps !== undefined && { steps: d.steps }),
        ...(d.cfg_scale !== undefined && { cfgScale: d.cfg_scale }),
        ...(d.scheduler !== undefined && { scheduler: d.scheduler }),
        ...(d.refiner !== undefined && { refiner: d.refiner }),
      },
    });
  }
  if (defaultModel !== undefined && !entries.some((entry) => entry.name === defaultModel)) {
    throw new KittyError(
      "config_invalid",
      `KITTY_IMAGES_DEFAULT_MODEL='${defaultModel}' is not in ${sourcePath} (known: ${entries.map((e) => e.name).join(", ")})`,
    );
  }
  return new ModelCatalog(entries, defaultModel ?? entries[0]?.name ?? null, sourcePath, lorasDir, folders[CONTROLNETS_KEY] ?? null, folders[UPSCALERS_KEY] ?? null, styles);
}

export function loadModelsYaml(sourcePath: string, defaultModel?: string, hubCache?: string, defaultEngine?: EngineName): ModelCatalog {
  if (!existsSync(sourcePath)) {
    throw new KittyError("config_invalid", `MODELS_YAML points at ${sourcePath}, which does not exist`);
  }
  return parseModelsYaml(readFileSync(sourcePath, "utf8"), sourcePath, defaultModel, hubCache, defaultEngine);
}
