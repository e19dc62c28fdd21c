import { z } from "zod";
import { KittyError } from "../core/errors.js";

/** models.yaml's key for prompt styles: a name for a way of wording the prompt (KITTY's UI offers them by name). */
export const STYLES_KEY = "styles";

/** A style: the prompt's template (`{prompt}` is where the asked prompt goes; without it the style follows the prompt) and words to avoid. */
export interface PromptStyle {
  prompt: string;
  negative: string | null;
}

const styleSchema = z.union([
  z.string().min(1),
  z.object({ prompt: z.string().min(1), negative: z.string().min(1).optional() }).strict(),
]);

/** The `styles:` map, or a config_invalid error naming the style and what its entry may be. */
export function parseStyles(value: unknown, sourcePath: string): Record<string, PromptStyle> {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new KittyError("config_invalid", `${sourcePath}: '${STYLES_KEY}' must map a style's name to its prompt template, e.g. 'styles: {blueprint: "technical blueprint of {prompt}, white lines on blue"}'`);
  }
  const styles: Record<string, PromptStyle> = {};
  for (const [name, entry] of Object.entries(value)) {
    const parsed = styleSchema.safeParse(entry);
    if (!parsed.success) {
      throw new KittyError("config_invalid", `${sourcePath}: style '${name}' must be a prompt template ("... {prompt} ...") or {prompt, negative?}`);
    }
    styles[name] = typeof parsed.data === "string" ? { prompt: parsed.data, negative: null } : { prompt: parsed.data.prompt, negative: parsed.data.negative ?? null };
  }
  return styles;
}

/** The prompt and negative prompt a style makes of the asked ones. */
export function applyStyle(style: PromptStyle, prompt: string, negative: string | undefined): { prompt: string; negativePrompt: string | undefined } {
  const styled = style.prompt.includes("{prompt}") ? style.prompt.split("{prompt}").join(prompt) : `${prompt}, ${style.prompt}`;
  const negativePrompt = style.negative ? (negative ? `${negative}, ${style.negative}` : style.negative) : negative;
  return { prompt: styled, negativePrompt };
}

/** The style by name, or invalid_argument (field `style`) naming the styles there are. */
export function findStyle(styles: Readonly<Record<string, PromptStyle>>, name: string): PromptStyle {
  const style = styles[name];
  if (style) return style;
  const known = Object.keys(styles);
  throw new KittyError(
    "invalid_argument",
    known.length ? `style '${name}' is not one of models.yaml's styles (${known.join(", ")})` : `style '${name}' is not known: models.yaml has no 'styles:'`,
    "style",
  );
}
