import { z } from "zod";
import { CONTROL_TYPES, LIMITS, REFINER_MODES, SCHEDULERS, type ControlUse, type OutpaintSides } from "../../core/generation.js";
import { catalogWithEngineModels } from "../../models/engineCatalog.js";
import { resolveRequest } from "../../models/resolveRequest.js";
import { modelsOfWorkers } from "../../models/workerModels.js";
import { clipBudget } from "../../models/promptBudget.js";
import { boundedInt, boundedNumber, boundedText, controlList, loraList, oneOf, oneOfListedElsewhere, seedArgument, sidesInPixels } from "../../core/arguments.js";
import { resolveImageInput } from "../../uploads/imageInputs.js";
import { defineTool } from "./toolKit.js";

const { size, steps, cfgScale, seed, promptChars, count, strength, loras, outpaint, maskBlur, control } = LIMITS;

export const generateImage = defineTool({
  name: "generate_image",
  icon: "M12 3l2 6 6 2-6 2-2 6-2-6-6-2 6-2z",
  description: "Queue an image job; returns a jobId at once. Unset size/steps: the model's defaults. Next: job_status with wait_seconds, then select_image.",
  // readOnlyHint and idempotentHint default to false, openWorldHint to true (an image may come from a listed host).
  annotations: { destructiveHint: false },
  input: {
    prompt: boundedText("prompt", promptChars, { required: true }),
    negative_prompt: boundedText("negative_prompt", promptChars, { required: false }).optional(),
    model: z.string({ error: "model must be a string: a name from list_models" }).describe("From list_models.").optional(),
    width: boundedInt("width", size.min, size.max, undefined, size.multipleOf).optional(),
    height: boundedInt("height", size.min, size.max, undefined, size.multipleOf).optional(),
    steps: boundedInt("steps", steps.min, steps.max).optional(),
    cfg_scale: boundedNumber("cfg_scale", cfgScale.min, cfgScale.max).optional(),
    seed: seedArgument("seed", seed.min, seed.max).optional(),
    scheduler: oneOfListedElsewhere("scheduler", SCHEDULERS, "See list_models.").optional(),
    refiner: z.boolean({ error: "refiner must be true or false" }).optional(),
    refiner_mode: oneOf("refiner_mode", REFINER_MODES, "ensemble: refiner ends the steps; polish: a light pass after.").optional(),
    count: boundedInt("count", count.min, count.max).optional(),
    init_image: z.string({ error: "init_image must be a string: an image key, storageUri or downloadUrl" }).describe("Key, imageRef URL, data: URL or path.").optional(),
    strength: boundedNumber("strength", strength.min, strength.max, "Share repainted.").optional(),
    outpaint: sidesInPixels("outpaint", outpaint.maxSide, "Pixels added per side.").optional(),
    mask: z.string({ error: "mask must be a string: an image like init_image's" }).describe("Inpaint init_image where white.").optional(),
    mask_blur: boundedInt("mask_blur", maskBlur.min, maskBlur.max).optional(),
    control: controlList("control", control.max, CONTROL_TYPES, control.strength).describe("ControlNet maps.").optional(),
    loras: loraList("loras", loras.max, loras.weight).describe("From list_models.").optional(),
    // The length is checked without being listed: tools/list is paid in tokens, and a style's name is short.
    style: z.string({ error: "style must be a string: a name from list_models' styles" }).refine((name) => name.length <= 100, { error: "style is a name from list_models' styles (at most 100 characters)" }).optional(),
  },
  output: {
    jobId: z.string(),
    position: z.number().int(),
    model: z.string(),
    width: z.number().int(),
    height: z.number().int(),
    seed: z.number().int(),
    // Also `status` ("queued"), `steps` and `count`, said in the summary too; left out of the schema as tokens, and
    // `status` so that a task's result (job_status's answer: "done") fits this schema too.
  },
  async handler({ negative_prompt, cfg_scale, refiner_mode, init_image, mask, mask_blur, control: maps, ...rest }, { config, queue, imageInputs, door, log, engineModels, workers }) {
    const initSource = init_image === undefined ? null : await resolveImageInput(init_image, "init_image", door, imageInputs);
    const maskSource = mask === undefined ? undefined : await resolveImageInput(mask, "mask", door, imageInputs);
    const controls = [];
    for (const [index, map] of (maps ?? []).entries()) controls.push({ ...map, image: await resolveImageInput(map.image, `control[${index}].image`, door, imageInputs) });
    const request = resolveRequest(
      { ...rest, negativePrompt: negative_prompt, cfgScale: cfg_scale, refinerMode: refiner_mode, initImage: init_image, mask: maskSource, maskBlur: mask_blur, control: controls },
      await catalogWithEngineModels(config.models, config.engine, engineModels, { model: rest.model }),
      () => initSource,
      workers ? modelsOfWorkers(await workers()) : undefined,
      clipBudget(config.runner.clipVocab, config.promptTokenCap),
    );
    const { job, position } = await queue.enqueue(request);
    log.info({ jobId: job.id, model: request.model.name, position }, "job queued");
    return {
      structured: {
        jobId: job.id,
        status: "queued" as const,
        position,
        model: request.model.name,
        width: request.width,
        height: request.height,
        steps: request.steps,
        seed: request.seed,
        count: request.count ?? 1,
      },
      summary:
        `Queued job ${job.id} (${request.model.name}, ${request.width}x${request.height}, ${request.steps} steps, ` +
        `${request.count && request.count > 1 ? `${request.count} images from seed` : "seed"} ${request.seed}) ` +
        `at position ${position}.${outpaintNote(rest.outpaint, request.outpaint)}${controlNote(request.control)} Next: job_status {"jobId":"${job.id}","wait_seconds":30}.`,
    };
  },
});

/** Which ControlNet reads each map: the server chose it from the folder by the model's family and the map's type. */
function controlNote(control: readonly ControlUse[] | undefined): string {
  if (!control?.length) return "";
  return ` Control: ${control.map((use) => `${use.type} via ${use.controlnet}`).join(", ")}.`;
}

/** What an outpaint adds, and where the canvas was rounded up to the family's size multiple (the extra goes right and down). */
function outpaintNote(asked: { right?: number | undefined; bottom?: number | undefined } | undefined, run: OutpaintSides | null | undefined): string {
  if (!run) return "";
  const rounded = run.right !== (asked?.right ?? 0) || run.bottom !== (asked?.bottom ?? 0);
  return ` Outpaint adds ${run.left} px left, ${run.right} right, ${run.top} top, ${run.bottom} bottom${rounded ? " (right and bottom rounded up to the model's size multiple)" : ""}.`;
}
