import { existsSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import path from "node:path";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { KittyError } from "./errors.js";
import { SCHEDULERS } from "./engines/schedulers.js";

/**
 * models.yaml: the original images-service's flat map (`name: /path/to/diffusers-folder`) with richer
 * entries allowed beside it. The first entry is the default model unless KITTY_IMAGES_DEFAULT_MODEL says otherwise.
 */
export type ModelFamily = "sd15" | "sdxl";

export interface ModelDefaults {
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  scheduler: string | null;
  refiner: boolean;
}

export interface ModelEntry {
  name: string;
  path: string;
  /** Declared in models.yaml; otherwise read from the folder's model_index.json when asked. */
  declaredFamily: ModelFamily | null;
  refinerPath: string | null;
  defaults: Partial<ModelDefaults>;
  description: string | null;
}

export const FAMILY_DEFAULTS: Record<ModelFamily, ModelDefaults> = {
  sdxl: { width: 1024, height: 1024, steps: 30, cfgScale: 7, scheduler: null, refiner: false },
  sd15: { width: 512, height: 512, steps: 30, cfgScale: 7, scheduler: "euler_a", refiner: false },
};

/** The SDXL refiner pass stays short and gentle: it polishes detail, it does not repaint. */
export const REFINER_LIMITS = { maxSteps: 10, maxCfgScale: 5, switchAt: 0.8 } as const;

const PIPELINE_FAMILIES: Record<string, ModelFamily | "sdxl_refiner"> = {
  StableDiffusionPipeline: "sd15",
  StableDiffusionXLPipeline: "sdxl",
  StableDiffusionXLImg2ImgPipeline: "sdxl_refiner",
};

const richEntrySchema = z
  .object({
    path: z.string().min(1),
    family: z.enum(["sd15", "sdxl"]).optional(),
    refiner: z.string().min(1).optional(),
    description: z.string().optional(),
    // the same limits generate_image enforces, so a default can never make a job the tool would refuse
    defaults: z
      .object({
        width: z.number().int().min(256).max(2048).multipleOf(8).optional(),
        height: z.number().int().min(256).max(2048).multipleOf(8).optional(),
        steps: z.number().int().min(1).max(150).optional(),
        cfg_scale: z.number().min(0).max(30).optional(),
        scheduler: z.enum(SCHEDULERS).optional(),
        refiner: z.boolean().optional(),
      })
      .strict()
      .optional(),
  })
  .strict();

const entrySchema = z.union([z.string().min(1), richEntrySchema]);

export class ModelCatalog {
  constructor(
    readonly entries: ModelEntry[],
    readonly defaultModel: string | null,
    readonly sourcePath: string | null,
  ) {}

  names(): string[] {
    return this.entries.map((entry) => entry.name);
  }

  get(name: string): ModelEntry {
    const entry = this.entries.find((candidate) => candidate.name === name);
    if (!entry) {
      const known = this.names().join(", ") || "none: models.yaml is empty";
      throw new KittyError("unknown_model", `model '${name}' is not in models.yaml (known: ${known})`);
    }
    return entry;
  }
}

function expandPath(raw: string, baseDir: string): string {
  const expanded = raw.startsWith("~/") ? path.join(homedir(), raw.slice(2)) : raw;
  return path.resolve(baseDir, expanded);
}

export function parseModelsYaml(text: string, sourcePath: string, defaultModel?: string): ModelCatalog {
  const baseDir = path.dirname(sourcePath);
  let document: unknown;
  try {
    document = parseYaml(text) ?? {};
  } catch (error) {
    throw new KittyError("config_invalid", `${sourcePath} is not valid YAML: ${(error as Error).message}`);
  }
  if (typeof document !== "object" || document === null || Array.isArray(document)) {
    throw new KittyError("config_invalid", `${sourcePath} must be a map of model name to folder (or to an entry with a path)`);
  }
  const raw = document as Record<string, unknown>;
  const entries: ModelEntry[] = [];
  for (const [name, value] of Object.entries(raw)) {
    const parsed = entrySchema.safeParse(value);
    if (!parsed.success) {
      const issue = parsed.error.issues[0];
      const where = issue?.path.length ? `.${issue.path.join(".")}` : "";
      throw new KittyError(
        "config_invalid",
        `${sourcePath}: entry '${name}${where}' is invalid (${issue?.message}); use 'name: /path/to/diffusers-folder' or 'name: {path, family?, refiner?, defaults?}'`,
      );
    }
    const entry = parsed.data;
    if (typeof entry === "string") {
      entries.push({ name, path: expandPath(entry, baseDir), declaredFamily: null, refinerPath: null, defaults: {}, description: null });
      continue;
    }
    // A refiner may name another entry or give a folder.
    const refinerRef = entry.refiner;
    const refinerTarget = refinerRef === undefined ? null : raw[refinerRef];
    const refinerPath =
      refinerRef === undefined
        ? null
        : typeof refinerTarget === "string"
          ? expandPath(refinerTarget, baseDir)
          : expandPath(refinerRef, baseDir);
    const d = entry.defaults ?? {};
    entries.push({
      name,
      path: expandPath(entry.path, baseDir),
      declaredFamily: entry.family ?? null,
      refinerPath,
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
  return new ModelCatalog(entries, defaultModel ?? entries[0]?.name ?? null, sourcePath);
}

export function loadModelsYaml(sourcePath: string, defaultModel?: string): ModelCatalog {
  if (!existsSync(sourcePath)) {
    throw new KittyError("config_invalid", `MODELS_YAML points at ${sourcePath}, which does not exist`);
  }
  return parseModelsYaml(readFileSync(sourcePath, "utf8"), sourcePath, defaultModel);
}

export interface ModelOnDisk {
  present: boolean;
  family: ModelFamily | "sdxl_refiner" | null;
  problem: string | null;
}

/** Reads the folder's model_index.json, as diffusers does, so users never have to declare the family. */
export function inspectModelFolder(folder: string): ModelOnDisk {
  const indexPath = path.join(folder, "model_index.json");
  if (!existsSync(folder)) return { present: false, family: null, problem: `folder ${folder} does not exist` };
  if (!existsSync(indexPath)) {
    return { present: false, family: null, problem: `${folder} has no model_index.json (not a diffusers folder)` };
  }
  try {
    const className = (JSON.parse(readFileSync(indexPath, "utf8")) as { _class_name?: string })._class_name ?? "";
    const family = PIPELINE_FAMILIES[className] ?? null;
    return family
      ? { present: true, family, problem: null }
      : { present: true, family: null, problem: `${indexPath} names ${className}, which is not SD 1.5 or SDXL` };
  } catch (error) {
    return { present: false, family: null, problem: `${indexPath} is unreadable: ${(error as Error).message}` };
  }
}
