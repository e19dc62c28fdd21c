import { KittyError } from "../core/errors.js";
import type { ModelFamily } from "../core/generation.js";
import { ClipTokenCounter } from "./clipTokens.js";
import { FAMILIES } from "./families.js";

/** How many CLIP tokens a prompt may be (KITTY_IMAGES_PROMPT_TOKEN_CAP) and how they are counted. */
export interface PromptBudget {
  cap: number;
  count(text: string): number;
}

const counters = new Map<string, ClipTokenCounter | null>();

/** The budget over the CLIP vocabulary at `vocabGz` (read once per process); undefined without the file (setup not run). */
export function clipBudget(vocabGz: string, cap: number): PromptBudget | undefined {
  if (!counters.has(vocabGz)) counters.set(vocabGz, ClipTokenCounter.load(vocabGz));
  const counter = counters.get(vocabGz);
  return counter ? { cap, count: (text) => counter.count(text) } : undefined;
}

/**
 * A chunked (CLIP) family encodes every 75 tokens of prompt as one more pass, so a prompt's cost grows with its
 * length (thousands of tokens of emoji or CJK ran a job about 15x longer): past the cap it is refused before
 * queueing, with the count and the cap. T5 and LLM encoders stop at their own limit, which the runner reports.
 */
export function checkPromptTokens(ask: { prompt: string; negativePrompt?: string | undefined }, model: string, family: ModelFamily, budget: PromptBudget): void {
  if (FAMILIES[family]?.prompt.encoder !== "clip") return;
  for (const [field, text] of [["prompt", ask.prompt], ["negative_prompt", ask.negativePrompt]] as const) {
    if (!text) continue;
    const tokens = budget.count(text);
    if (tokens > budget.cap) {
      throw new KittyError(
        "invalid_argument",
        `${field} is ${tokens} CLIP tokens; model '${model}' (${family}) encodes it 75 tokens at a time, and this server takes at most ${budget.cap} (KITTY_IMAGES_PROMPT_TOKEN_CAP): shorten it`,
        field,
      );
    }
  }
}
