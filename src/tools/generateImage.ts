import { z } from "zod";
import { LIMITS, SCHEDULERS } from "../generation.js";
import { resolveRequest } from "../models/resolveRequest.js";
import { boundedInt, boundedNumber, boundedText, oneOf } from "../arguments.js";
import { defineTool } from "./toolKit.js";

const { size, steps, cfgScale, seed, promptChars } = LIMITS;

export const generateImage = defineTool({
  name: "generate_image",
  title: "Generate an image",
  description:
    "Queue a text-to-image job; returns a jobId at once. Next: job_status with wait_seconds, then select_image. " +
    "Unset fields take the model's defaults (list_models).",
  annotations: { readOnlyHint: false, destructiveHint: false, idempotentHint: false, openWorldHint: false },
  input: {
    prompt: boundedText("prompt", promptChars, { required: true }),
    negative_prompt: boundedText("negative_prompt", promptChars, { required: false }).optional(),
    model: z.string({ error: "model must be a string: a name from list_models" }).describe("From list_models.").optional(),
    width: boundedInt("width", size.min, size.max, undefined, size.multipleOf).optional(),
    height: boundedInt("height", size.min, size.max, undefined, size.multipleOf).optional(),
    steps: boundedInt("steps", steps.min, steps.max).optional(),
    cfg_scale: boundedNumber("cfg_scale", cfgScale.min, cfgScale.max, "Prompt adherence.").optional(),
    seed: boundedInt("seed", seed.min, seed.max, "Same seed and settings, same image. Default random.").optional(),
    scheduler: oneOf("scheduler", SCHEDULERS).optional(),
    refiner: z.boolean({ error: "refiner must be true or false" }).describe("SDXL only: finish with the model's refiner.").optional(),
  },
  output: {
    jobId: z.string(),
    status: z.literal("queued"),
    position: z.number().int(),
    model: z.string(),
    width: z.number().int(),
    height: z.number().int(),
    steps: z.number().int(),
    seed: z.number().int(),
  },
  async handler({ negative_prompt, cfg_scale, ...rest }, { config, queue, log }) {
    const request = resolveRequest({ ...rest, negativePrompt: negative_prompt, cfgScale: cfg_scale }, config.models);
    const { job, position } = queue.enqueue(request);
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
      },
      summary:
        `Queued job ${job.id} (${request.model.name}, ${request.width}x${request.height}, ${request.steps} steps, seed ${request.seed}) ` +
        `at position ${position}. Next: job_status {"jobId":"${job.id}","wait_seconds":30}.`,
    };
  },
});
