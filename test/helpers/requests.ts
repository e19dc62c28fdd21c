import type { GenerationRequest } from "../../src/core/generation.js";

/** A resolved request for store and worker tests; the model path need not exist unless an engine loads it. */
export function makeRequest(overrides: Partial<GenerationRequest> = {}): GenerationRequest {
  return {
    prompt: "a red cube on a desk",
    negativePrompt: null,
    model: { name: "m", path: "/models/m", refinerPath: null },
    width: 512,
    height: 512,
    steps: 4,
    cfgScale: 7,
    seed: 1,
    scheduler: null,
    refiner: null,
    ...overrides,
  };
}
