import { z } from "zod";

/**
 * Argument rules every door applies (MCP tools, the REST API): each failure message names the field, what is
 * allowed and what was given, so a model or a person can fix the call.
 */

/** An integer argument whose every failure message names the field, the allowed range and what was given. */
export function boundedInt(field: string, min: number, max: number, description?: string, multipleOf?: number) {
  const rule = multipleOf ? `a multiple of ${multipleOf} between ${min} and ${max}` : `an integer between ${min} and ${max}`;
  const message = (issue: { input?: unknown }) => `${field} must be ${rule} (got ${JSON.stringify(issue.input)})`;
  // Each check stops at its failure: the message is the same for all, and a caller should read it once.
  let schema = z.number({ error: message }).int({ error: message, abort: true }).min(min, { error: message, abort: true }).max(max, { error: message, abort: true });
  if (multipleOf) schema = schema.multipleOf(multipleOf, { error: message, abort: true });
  return described(schema, description);
}

export function boundedNumber(field: string, min: number, max: number, description?: string) {
  const message = (issue: { input?: unknown }) => `${field} must be a number between ${min} and ${max} (got ${JSON.stringify(issue.input)})`;
  return described(z.number({ error: message }).min(min, { error: message, abort: true }).max(max, { error: message, abort: true }), description);
}

/** A string that must hold something other than whitespace, up to `max` characters. */
export function boundedText(field: string, max: number, { required }: { required: boolean }) {
  const what = required ? `${field} is required: a non-blank string of at most ${max} characters` : `${field} must be a string of at most ${max} characters`;
  return z
    .string({ error: (issue) => `${what} (got ${issue.input === undefined ? "nothing" : typeof issue.input})` })
    .max(max, { error: (issue) => `${field} must be at most ${max} characters (got ${String(issue.input).length})` })
    .refine((text) => !required || text.trim().length > 0, { error: `${field} must not be blank: describe the image` })
    // A lone UTF-16 surrogate ("\ud800") is valid JSON but no text: no encoder can take it, and the job would fail later.
    .refine((text) => !/\p{Cs}/u.test(text), { error: `${field} holds a lone UTF-16 surrogate (a broken character); send well-formed Unicode text` });
}

/** The LoRAs a job applies: names from list_models, each at a weight. */
export function loraList(field: string, max: number, weight: { min: number; max: number }) {
  const item = z
    .object({
      name: z.string({ error: `${field}[].name must be a LoRA name from list_models` }),
      weight: boundedNumber(`${field}[].weight`, weight.min, weight.max).default(1),
    })
    .strict();
  return z.array(item, { error: `${field} must be a list of {name, weight}` }).max(max, { error: (issue) => `${field} takes at most ${max} LoRAs (got ${(issue.input as unknown[]).length})` });
}

/**
 * Outpaint's pixels per side: an object of up to four side names. Each side's range is checked here and named in
 * the message, not spelled out four times in tools/list (paid in tokens on every turn).
 */
export function sidesInPixels(field: string, max: number, description: string) {
  const side = (name: string) => {
    const message = (issue: { input?: unknown }) => `${field}.${name} must be an integer between 0 and ${max} pixels (got ${JSON.stringify(issue.input)})`;
    return z.number({ error: message }).int({ error: message }).refine((pixels) => pixels >= 0 && pixels <= max, { error: message }).optional();
  };
  return z
    .object({ left: side("left"), right: side("right"), top: side("top"), bottom: side("bottom") }, { error: `${field} must be an object of pixels per side: {left, right, top, bottom}` })
    .strict()
    .describe(description);
}

/**
 * One of `values`, checked as oneOf checks it, but shown in tools/list as a string with `description`: for a long
 * list whose members depend on the model (schedulers), which list_models gives per model.
 */
export function oneOfListedElsewhere<T extends readonly [string, ...string[]]>(field: string, values: T, description: string) {
  return z.string({ error: (issue) => `${field} must be one of ${values.join(", ")} (got ${JSON.stringify(issue.input)})` }).pipe(oneOf(field, values)).describe(description);
}

/**
 * ControlNet maps: up to `max` of {image, type, strength, start, end, preprocess}. Ranges are checked here and
 * named in the message, not spelled out in tools/list (paid in tokens on every turn); the types are listed.
 */
export function controlList<T extends readonly [string, ...string[]]>(field: string, max: number, types: T, strength: { min: number; max: number }) {
  const share = (name: string) => boundedShare(`${field}[].${name}`, 0, 1);
  const item = z
    .object(
      {
        image: z.string({ error: `${field}[].image must be a string: an image like init_image's` }),
        type: oneOf(`${field}[].type`, types),
        strength: boundedShare(`${field}[].strength`, strength.min, strength.max).optional(),
        start: share("start").optional(),
        end: share("end").optional(),
        preprocess: z.boolean({ error: `${field}[].preprocess must be true or false` }).optional(),
      },
      { error: `${field} must be a list of {image, type, strength?, start?, end?, preprocess?}` },
    )
    .strict();
  return z.array(item, { error: `${field} must be a list of {image, type, ...}` }).max(max, { error: (issue) => `${field} takes at most ${max} maps (got ${(issue.input as unknown[]).length})` });
}

/** A number whose range is said in its error message only (see controlList). */
function boundedShare(field: string, min: number, max: number) {
  const message = (issue: { input?: unknown }) => `${field} must be a number between ${min} and ${max} (got ${JSON.stringify(issue.input)})`;
  return z.number({ error: message }).refine((value) => value >= min && value <= max, { error: message });
}

/**
 * A seed: a whole number from 0 to 2^32 - 1, the range said in its error message, not in tools/list (where it
 * would cost tokens in every tool that takes one, and an agent picks small seeds anyway).
 */
export function seedArgument(field: string, min: number, max: number) {
  const message = (issue: { input?: unknown }) => `${field} must be an integer between ${min} and ${max} (got ${JSON.stringify(issue.input)})`;
  // too_small / too_big, as .min/.max would say (REST's 422 names the kind), without their bounds in the JSON Schema.
  return z
    .number({ error: message })
    .int({ error: message })
    .superRefine((value, context) => {
      if (value < min) context.addIssue({ code: "too_small", origin: "number", minimum: min, inclusive: true, input: value, message: message({ input: value }) });
      else if (value > max) context.addIssue({ code: "too_big", origin: "number", maximum: max, inclusive: true, input: value, message: message({ input: value }) });
    });
}

export function oneOf<T extends readonly [string, ...string[]]>(field: string, values: T, description?: string) {
  return described(z.enum(values, { error: (issue) => `${field} must be one of ${values.join(", ")} (got ${JSON.stringify(issue.input)})` }), description);
}

/** The JSON Schema already states bounds and enums; a description is added only where it tells the model more. */
function described<T extends z.ZodType>(schema: T, description: string | undefined): T {
  return description ? schema.describe(description) : schema;
}
