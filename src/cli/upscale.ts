import { queueAndFollow } from "./generate.js";
import { numberFlag, parseCommand } from "./usage.js";

const FLAGS = {
  scale: { type: "string" },
  prompt: { type: "string" },
  model: { type: "string" },
  strength: { type: "string" },
  wait: { type: "boolean" },
  demo: { type: "boolean" },
} as const;

/** `kitty-images upscale KEY|URI|URL|FILE [--scale 2|4] [...] [--wait]`: upscale_image, then (with --wait) job_status to the end. */
export async function upscaleCommand(args: string[]): Promise<void> {
  const { values, positionals } = parseCommand("upscale", args, FLAGS, { min: 1, max: 1, name: "an image: a key from kitty-images latest, an imageRef's storageUri or downloadUrl, or an image file" });
  const request = Object.fromEntries(
    Object.entries({
      image: positionals[0],
      scale: numberFlag("scale", values.scale),
      prompt: values.prompt,
      model: values.model,
      strength: numberFlag("strength", values.strength, "number"),
    }).filter(([, value]) => value !== undefined),
  );
  await queueAndFollow("upscale_image", request, values.wait ?? false, ["image"], values.demo ?? false);
}
