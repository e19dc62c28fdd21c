import { readFileSync } from "node:fs";
import { KittyError } from "../core/errors.js";
import type { GenerationRequest } from "../core/generation.js";

/**
 * A ComfyUI workflow of the user's own, in API format ("Save (API Format)"), filled from a request. Each input is
 * found by a node title first (`kitty:prompt`, `kitty:negative_prompt`, `kitty:sampler`, `kitty:size`,
 * `kitty:checkpoint`, `kitty:output`), else by the shape of an ordinary text-to-image graph: the one KSampler, the
 * text encodes its positive and negative inputs link to, the one empty latent, loader and SaveImage.
 */

type Node = { class_type: string; inputs: Record<string, unknown>; _meta?: { title?: string } };
export type Workflow = Record<string, Node>;

const SAMPLERS = ["KSampler", "KSamplerAdvanced"];
const LATENTS = ["EmptyLatentImage", "EmptySD3LatentImage"];
const LOADERS = ["CheckpointLoaderSimple"];
const OUTPUTS = ["SaveImage"];

/** Reads and checks a workflow file: an API-format graph whose sampler, prompts, size and output can all be found. */
export function loadWorkflow(file: string): Workflow {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(file, "utf8"));
  } catch (error) {
    throw new KittyError("config_invalid", `the ComfyUI workflow ${file} could not be read as JSON: ${(error as Error).message}`);
  }
  if (parsed && typeof parsed === "object" && Array.isArray((parsed as { nodes?: unknown }).nodes)) {
    throw new KittyError("config_invalid", `the ComfyUI workflow ${file} is in the editor's format; export it with "Save (API Format)" (enable dev mode options in ComfyUI's settings)`);
  }
  const nodes = Object.entries((parsed ?? {}) as Record<string, unknown>);
  if (nodes.length === 0 || !nodes.every(([, node]) => typeof (node as Node)?.class_type === "string" && typeof (node as Node)?.inputs === "object")) {
    throw new KittyError("config_invalid", `the ComfyUI workflow ${file} is not an API-format graph (an object of nodes, each with class_type and inputs)`);
  }
  const workflow = parsed as Workflow;
  roles(workflow, file);
  return workflow;
}

interface Roles {
  sampler: string;
  positive: string;
  negative: string | null;
  size: string | null;
  checkpoint: string | null;
  output: string;
}

function roles(workflow: Workflow, file: string): Roles {
  const ids = Object.keys(workflow);
  const titled = (role: string) => ids.find((id) => workflow[id]!._meta?.title?.trim().toLowerCase() === `kitty:${role}`);
  const only = (classes: string[]) => {
    const found = ids.filter((id) => classes.includes(workflow[id]!.class_type));
    return found.length === 1 ? found[0]! : null;
  };
  const linked = (from: string | undefined, input: string) => {
    const link = from === undefined ? undefined : workflow[from]!.inputs[input];
    return Array.isArray(link) && typeof link[0] === "string" && workflow[link[0]] ? link[0] : null;
  };
  const missing = (what: string, role: string, classes: string) =>
    new KittyError("config_invalid", `the ComfyUI workflow ${file} has no single ${classes} for the ${what}: title the node 'kitty:${role}'`);
  const sampler = titled("sampler") ?? only(SAMPLERS);
  if (!sampler) throw missing("sampler", "sampler", SAMPLERS.join(" or "));
  const positive = titled("prompt") ?? linked(sampler, "positive");
  if (!positive) throw missing("prompt", "prompt", "text encode linked to the sampler's positive input");
  const output = titled("output") ?? only(OUTPUTS);
  if (!output) throw missing("image", "output", OUTPUTS.join(" or "));
  return {
    sampler,
    positive,
    negative: titled("negative_prompt") ?? linked(sampler, "negative"),
    size: titled("size") ?? only(LATENTS),
    checkpoint: titled("checkpoint") ?? only(LOADERS),
    output,
  };
}

/** Sets what an input of the node has; text encodes for SDXL carry the prompt twice (text_g, text_l). */
function set(node: Node, values: Record<string, unknown>): void {
  for (const [input, value] of Object.entries(values)) if (input in node.inputs) node.inputs[input] = value;
}

/** The workflow with this request's prompt, seed, steps, cfg, sampler, size and checkpoint; and its output node. */
export function fillWorkflow(
  workflow: Workflow,
  file: string,
  request: GenerationRequest,
  seed: number,
  sampling: { sampler: string; scheduler: string },
  checkpoint: string | null,
): { graph: Workflow; outputNode: string } {
  const graph = structuredClone(workflow);
  const found = roles(graph, file);
  set(graph[found.sampler]!, { seed, noise_seed: seed, steps: request.steps, cfg: request.cfgScale, sampler_name: sampling.sampler, scheduler: sampling.scheduler });
  set(graph[found.positive]!, { text: request.prompt, text_g: request.prompt, text_l: request.prompt });
  if (found.negative) set(graph[found.negative]!, { text: request.negativePrompt ?? "", text_g: request.negativePrompt ?? "", text_l: request.negativePrompt ?? "" });
  if (found.size) set(graph[found.size]!, { width: request.width, height: request.height, batch_size: 1 });
  if (found.checkpoint && checkpoint) set(graph[found.checkpoint]!, { ckpt_name: checkpoint });
  return { graph, outputNode: found.output };
}
