import { readFileSync } from "node:fs";
import type { FamilySpec, GenerationDefaults, ModelFamily, PipelineFamily } from "../core/generation.js";

/**
 * The family table, python/diffusers_runner/families.json: written once, read here and by the runner
 * (python/diffusers_runner/families.py). Read at start; the file ships beside the runner.
 */
export const FAMILIES: Readonly<Record<ModelFamily, FamilySpec>> = (
  JSON.parse(readFileSync(new URL("../../python/diffusers_runner/families.json", import.meta.url), "utf8")) as { families: Record<string, FamilySpec> }
).families;

/** Families a model in models.yaml can be. */
export const MODEL_FAMILIES = Object.keys(FAMILIES) as [ModelFamily, ...ModelFamily[]];

/** diffusers' pipeline class (model_index.json `_class_name`) to family; SDXL's refiner is only another model's helper. */
export const PIPELINE_FAMILIES: Readonly<Record<string, PipelineFamily>> = {
  ...Object.fromEntries(Object.entries(FAMILIES).map(([name, family]) => [family.pipelines.text, name])),
  StableDiffusionXLImg2ImgPipeline: "sdxl_refiner",
};

/** What an unset field becomes for a model of each family, before its models.yaml entry's own defaults. */
export const FAMILY_DEFAULTS: Readonly<Record<ModelFamily, GenerationDefaults>> = Object.fromEntries(
  Object.entries(FAMILIES).map(([name, family]) => [name, { ...family.defaults, refiner: false }]),
);
