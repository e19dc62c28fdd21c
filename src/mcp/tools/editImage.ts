import { z } from "zod";
import { boundedText, seedArgument } from "../../core/arguments.js";
import { KittyError } from "../../core/errors.js";
import { LIMITS } from "../../core/generation.js";
import { catalogWithEngineModels } from "../../models/engineCatalog.js";
import { FAMILIES } from "../../models/families.js";
import { familyOf } from "../../models/familyRules.js";
import { sizeLike } from "../../models/imageSizes.js";
import { inspectModel, resolveRequest } from "../../models/resolveRequest.js";
import { modelsOfWorkers } from "../../models/workerModels.js";
import { resolveImageInput } from "../../uploads/imageInputs.js";
import { defineTool } from "./toolKit.js";

const { promptChars, seed, editReferences } = LIMITS;

export const editImage = defineTool({
  name: "edit_image",
  icon: "M4 20h4L19 9l-4-4L4 16zM13 7l4 4",
  description: "Queue an edit of an image by instruction (models whose takes has edit). Next: job_status.",
  annotations: { destructiveHint: false },
  input: {
    image: z.string({ error: "image must be a string: an image like generate_image's init_image" }),
    instruction: boundedText("instruction", promptChars, { required: true }),
    references: z
      .array(z.string({ error: "references[] must be images like image" }), { error: "references must be a list of images" })
      .max(editReferences.max, { error: (issue) => `references takes at most ${editReferences.max} images (got ${(issue.input as unknown[]).length})` })
      .optional(),
    model: z.string({ error: "model must be a string: a name from list_models" }).optional(),
    seed: seedArgument("seed", seed.min, seed.max).optional(),
  },
  output: {
    jobId: z.string(),
    position: z.number().int(),
  },
  async handler({ image, instruction, references = [], model, seed: askedSeed }, { config, queue, imageInputs, door, log, engineModels, workers }) {
    const source = await resolveImageInput(image, "image", door, imageInputs);
    const others = [];
    for (const [index, reference] of references.entries()) others.push(await resolveImageInput(reference, `references[${index}]`, door, imageInputs));
    const catalog = await catalogWithEngineModels(config.models, config.engine, engineModels, { model });
    const elsewhere = workers ? modelsOfWorkers(await workers()) : undefined;
    const familyFor = (name: string) => {
      const entry = catalog.entries.find((candidate) => candidate.name === name);
      return entry && entry.engine === "diffusers" ? familyOf(entry, inspectModel(entry, elsewhere)) : null;
    };
    const edits = (name: string) => Boolean(FAMILIES[familyFor(name) ?? ""]?.pipelines.edit);
    const editing = catalog.entries.filter((entry) => edits(entry.name)).map((entry) => entry.name);
    const chosen = model ?? (catalog.defaultModel && edits(catalog.defaultModel) ? catalog.defaultModel : editing[0]);
    if (!chosen) {
      throw new KittyError("invalid_argument", "no model here edits images: add a FLUX.1 Kontext, Qwen-Image-Edit or FLUX.2 klein model to models.yaml (list_models shows 'edit' in takes)", "model");
    }
    catalog.get(chosen); // an unknown name is unknown_model, with the names there are
    const family = familyFor(chosen);
    const spec = family ? FAMILIES[family] : undefined;
    if (!spec?.pipelines.edit) {
      throw new KittyError(
        "invalid_argument",
        `model '${chosen}' ${spec ? `is ${spec.label}, which` : ""} does not edit images by instruction; ${editing.length ? `models that do: ${editing.join(", ")}` : "no model here does"}`,
        "model",
      );
    }
    const takes = spec.editImages ?? 1;
    if (1 + others.length > takes) {
      throw new KittyError("invalid_argument", `model '${chosen}' (${spec.label}) takes ${takes - 1 === 0 ? "no reference images" : `at most ${takes - 1} reference image(s)`} (got ${others.length})`, "references");
    }
    const request = {
      ...resolveRequest(
        { prompt: instruction, model: chosen, seed: askedSeed, editing: true, ...sizeLike(source.width, source.height, spec.sizeMultiple) },
        catalog,
        () => null,
        elsewhere,
      ),
      edit: { keys: [source.key, ...others.map((other) => other.key)] },
    };
    const { job, position } = await queue.enqueue(request);
    log.info({ jobId: job.id, model: chosen, image: source.key, references: others.length, position }, "edit queued");
    return {
      structured: { jobId: job.id, position },
      summary:
        `Queued job ${job.id}: editing ${source.key}${others.length ? ` with ${others.length} reference image(s)` : ""} on ${chosen} ` +
        `(${request.width}x${request.height}, ${request.steps} steps, seed ${request.seed}) at position ${position}. Next: job_status {"jobId":"${job.id}","wait_seconds":30}.`,
    };
  },
});
