import { z } from "zod";
import { RUNNER_ERROR_CODES } from "../core/errors.js";
import { REFINER_MODES, SCHEDULERS } from "../core/generation.js";

export { RUNNER_ERROR_CODES };

/**
 * The runner wire format, declared once on this side (python/diffusers_runner/protocol.py is the other side).
 * One JSON object per line; test/fixtures/runner-protocol.json keeps both sides in step.
 */

export const generateRequestSchema = z.object({
  type: z.literal("generate"),
  jobId: z.string(),
  model: z.object({ name: z.string(), path: z.string(), refinerPath: z.string().nullable().optional(), configPath: z.string().nullable().optional() }),
  prompt: z.string(),
  negativePrompt: z.string().nullable(),
  width: z.number().int(),
  height: z.number().int(),
  steps: z.number().int(),
  cfgScale: z.number(),
  seed: z.number().int(),
  scheduler: z.enum(SCHEDULERS).nullable(),
  refiner: z
    .object({
      steps: z.number().int(),
      cfgScale: z.number(),
      switchAt: z.number(),
      mode: z.enum(REFINER_MODES).optional(),
      strength: z.number().optional(),
    })
    .nullable(),
  /** The first image's PNG; a batch writes one PNG per outputPaths entry, seeds seed, seed+1, ... */
  outputPath: z.string(),
  outputPaths: z.array(z.string()).min(1).optional(),
  /** A small WebP beside each PNG, in outputPaths' order; none asked, none written. */
  previewPaths: z.array(z.string()).optional(),
  /** Image-to-image: a start image on local disk and how much of the schedule runs over it. */
  initImage: z.object({ path: z.string(), strength: z.number() }).nullable().optional(),
  outpaint: z.object({ left: z.number().int(), right: z.number().int(), top: z.number().int(), bottom: z.number().int() }).nullable().optional(),
  /** Inpaint: the mask on local disk (white repaints) and its edge's softening in pixels. */
  mask: z.object({ path: z.string(), blur: z.number().int() }).nullable().optional(),
  /** ControlNet: each map on local disk with the ControlNet folder that reads it (python/diffusers_runner/control.py). */
  control: z
    .array(z.object({ path: z.string(), imagePath: z.string(), type: z.string(), strength: z.number(), start: z.number(), end: z.number(), preprocess: z.boolean() }))
    .nullable()
    .optional(),
  /** An instruction edit: the image to edit, then its references, on local disk; the prompt is the instruction. */
  edit: z.object({ images: z.array(z.string()).min(1) }).nullable().optional(),
  /** upscale_image in ESRGAN mode: the model's path is an upscaler file, initImage the source (hires needs no field of its own). */
  upscale: z.object({ mode: z.literal("esrgan"), scale: z.number().int() }).nullable().optional(),
  loras: z.array(z.object({ name: z.string(), path: z.string(), weight: z.number() })).optional(),
});

export const cancelRequestSchema = z.object({ type: z.literal("cancel"), jobId: z.string() });
export const shutdownRequestSchema = z.object({ type: z.literal("shutdown") });
export const runnerRequestSchema = z.discriminatedUnion("type", [generateRequestSchema, cancelRequestSchema, shutdownRequestSchema]);
export type RunnerRequest = z.infer<typeof runnerRequestSchema>;

export const readyEventSchema = z.object({
  type: z.literal("ready"),
  device: z.string(),
  dtype: z.string(),
  versions: z.object({ python: z.string(), torch: z.string(), diffusers: z.string(), transformers: z.string() }),
  pid: z.number().int(),
});

export const progressEventSchema = z.object({
  type: z.literal("progress"),
  jobId: z.string(),
  step: z.number().int(),
  totalSteps: z.number().int(),
});

export const previewInfoSchema = z.object({
  path: z.string(),
  mimeType: z.string(),
  width: z.number().int(),
  height: z.number().int(),
  bytes: z.number().int(),
});

export const doneEventSchema = z.object({
  type: z.literal("done"),
  jobId: z.string(),
  outputPath: z.string(),
  width: z.number().int(),
  height: z.number().int(),
  seed: z.number().int(),
  family: z.string(),
  scheduler: z.string(),
  device: z.string(),
  dtype: z.string(),
  options: z.record(z.string(), z.boolean()),
  modelLoads: z.number().int(),
  stepsRun: z.number().int(),
  promptTokens: z.number().int(),
  promptNotes: z.object({ tokensDropped: z.number().int().optional(), emphasisStripped: z.boolean().optional() }).optional(),
  previews: z.array(previewInfoSchema.nullable()),
  timings: z.object({ loadSeconds: z.number(), inferenceSeconds: z.number(), saveSeconds: z.number() }),
});

export const errorEventSchema = z.object({
  type: z.literal("error"),
  jobId: z.string().nullable(),
  code: z.enum(RUNNER_ERROR_CODES),
  message: z.string(),
});

export const runnerEventSchema = z.discriminatedUnion("type", [readyEventSchema, progressEventSchema, doneEventSchema, errorEventSchema]);
export type RunnerEvent = z.infer<typeof runnerEventSchema>;
export type ReadyEvent = z.infer<typeof readyEventSchema>;
export type DoneEvent = z.infer<typeof doneEventSchema>;
