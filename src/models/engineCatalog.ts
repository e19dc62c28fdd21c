import type { EngineName } from "../core/generation.js";
import { ModelCatalog, type ModelEntry } from "./catalog.js";
import { matchCheckpoint } from "./checkpointNames.js";

/** What an engine that is another app (A1111, ComfyUI, InvokeAI) says it has, or why it could not be asked. */
export type EngineModels = { reachable: true; models: string[] } | { reachable: false; problem: string };

/**
 * Under IMAGE_ENGINE=a1111 every checkpoint the web UI offers is usable by its title, listed in models.yaml or
 * not, as the original service allowed: the catalog with those added (the first is the default when models.yaml
 * names none). The web UI is asked for `all` (list_models), or when the wanted model is not in models.yaml.
 */
export async function catalogWithEngineModels(
  catalog: ModelCatalog,
  defaultEngine: EngineName,
  engineModels: (engine: EngineName) => Promise<EngineModels>,
  wanted: { model?: string | undefined } | "all",
): Promise<ModelCatalog> {
  if (defaultEngine === "diffusers") return catalog;
  const known = new Set(catalog.names());
  // A name models.yaml does not have may still be an offered checkpoint's title, file name or model name.
  const needed = wanted === "all" || (wanted.model === undefined ? catalog.defaultModel === null : !known.has(wanted.model));
  if (!needed) return catalog;
  const offered = await engineModels(defaultEngine);
  if (!offered.reachable) return catalog;
  // A checkpoint an entry already names (under another name) is not listed twice.
  const naming = catalog.entries.filter((entry) => entry.engine === defaultEngine && entry.engineModel !== null).map((entry) => entry.engineModel!);
  const named = new Set(naming.flatMap((name) => matchCheckpoint(name, offered.models)));
  const added: ModelEntry[] = offered.models
    .filter((title) => !known.has(title) && !named.has(title))
    .map((title) => ({ name: title, engine: defaultEngine, engineModel: title, path: "", declaredFamily: null, refinerPath: null, configPath: null, defaults: {}, description: null }));
  if (added.length === 0) return catalog;
  return new ModelCatalog([...catalog.entries, ...added], catalog.defaultModel ?? added[0]!.name, catalog.sourcePath, catalog.lorasDir, catalog.controlnetsDir, catalog.upscalersDir, catalog.styles);
}
