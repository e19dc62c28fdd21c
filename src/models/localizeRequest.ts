import { KittyError } from "../core/errors.js";
import type { GenerationRequest } from "../core/generation.js";
import type { ModelCatalog } from "./catalog.js";

/**
 * A job queued on another host names its model's folders as that host's models.yaml has them; a GPU worker runs it
 * with its own: the model and each LoRA found by name in this host's models.yaml, so the hosts need not keep their
 * models at the same paths. Throws a KittyError saying what this host lacks.
 */
export function localizeRequest(request: GenerationRequest, catalog: ModelCatalog, host: string): GenerationRequest {
  const { model } = request;
  let entry;
  try {
    entry = catalog.get(model.name);
  } catch {
    throw new KittyError("model_missing", `worker '${host}' has no model '${model.name}' in its models.yaml (${catalog.sourcePath})`);
  }
  if (model.refinerPath && !entry.refinerPath) {
    throw new KittyError("model_missing", `worker '${host}' has model '${model.name}' without a refiner; add 'refiner: /path/to/refiner-folder' to its models.yaml entry`);
  }
  return {
    ...request,
    model: {
      ...model,
      path: entry.path,
      refinerPath: model.refinerPath ? entry.refinerPath : null,
      configPath: entry.configPath,
      basePath: entry.basePath ?? null,
      workflowPath: entry.workflowPath ?? null,
    },
    ...(request.loras && {
      loras: request.loras.map((lora) => {
        try {
          return { ...lora, path: catalog.lora(lora.name).path };
        } catch {
          throw new KittyError("model_missing", `worker '${host}' has no LoRA '${lora.name}' in its LoRA folder (${catalog.lorasDir ?? "none configured in its models.yaml"})`);
        }
      }),
    }),
  };
}
