/**
 * A tool's refusal in the command line's own words: the SDK's "Input validation error: Invalid arguments for tool
 * generate_image:" and the field repeated before each message go, argument names become the flags a person typed
 * (`cfg_scale` is `--cfg`), and tools named as next steps become the commands that call them.
 */
const FLAG_OF: Record<string, string> = {
  prompt: "the prompt",
  negative_prompt: "--negative",
  cfg_scale: "--cfg",
  init_image: "--init",
  mask_blur: "--mask-blur",
  refiner_mode: "--refiner-mode",
  loras: "--lora",
  image: "the image",
};
const COMMAND_OF: Record<string, string> = {
  list_latest_images: "kitty-images latest",
  select_image: "kitty-images select",
  list_models: "kitty-images models",
  generate_image: "kitty-images generate",
  upscale_image: "kitty-images upscale",
};
const FLAGS = ["model", "width", "height", "steps", "seed", "scheduler", "refiner", "count", "mask", "strength", "scale", "limit"];

export function inCliWords(text: string): string {
  const body = text.replace(/^Input validation error: Invalid arguments for tool [\w-]+: /, "");
  const problems = [...new Set(body.split(/, (?=[\w.[\]]+: )/))].map((problem) => {
    // "width: width must be ..." names the field twice.
    const doubled = /^([\w.[\]]+): (.*)$/.exec(problem);
    const plain = doubled && doubled[2]!.startsWith(doubled[1]!) ? doubled[2]! : problem;
    const field = /^([a-z_]+)\b/.exec(plain)?.[1];
    const flag = field && (FLAG_OF[field] ?? (FLAGS.includes(field) ? `--${field}` : undefined));
    return flag ? `${flag}${plain.slice(field!.length)}` : plain;
  });
  return problems.join("; ").replace(/\b(list_latest_images|select_image|list_models|generate_image|upscale_image)\b/g, (tool) => COMMAND_OF[tool]!);
}
