import type { ModelFamily } from "../core/generation.js";

/**
 * What the live GPU workers on a shared queue say of models and LoRAs this host has no files for (a front-end keeps
 * none): a model's family and whether some worker has its refiner, a LoRA's family. null: no live worker has it.
 */
export interface ModelsElsewhere {
  model(name: string): { family: ModelFamily | null; refiner: boolean } | null;
  lora(name: string): { family: ModelFamily | null } | null;
}

interface WorkerReport {
  alive: boolean;
  models: readonly string[];
  modelInfo: Record<string, { family: ModelFamily | null; refiner: boolean }>;
  loras: ReadonlyArray<{ name: string; family: ModelFamily | null }>;
}

/**
 * The live workers' word, merged: a model or LoRA is there when one of them has it. A worker registered before
 * workers described their models (model_info empty) still counts for the names it lists, family unknown.
 */
export function modelsOfWorkers(workers: readonly WorkerReport[]): ModelsElsewhere {
  const live = workers.filter((worker) => worker.alive);
  return {
    model(name) {
      const told = live.filter((worker) => worker.models.includes(name)).map((worker) => worker.modelInfo[name] ?? { family: null, refiner: false });
      if (told.length === 0) return null;
      return { family: told.find((info) => info.family)?.family ?? null, refiner: told.some((info) => info.refiner) };
    },
    lora(name) {
      const told = live.flatMap((worker) => worker.loras.filter((lora) => lora.name === name));
      return told.length === 0 ? null : { family: told.find((lora) => lora.family)?.family ?? null };
    },
  };
}
