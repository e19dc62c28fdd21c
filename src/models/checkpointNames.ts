/**
 * The names people and agents use for another app's checkpoint. AUTOMATIC1111 (and Forge) list a checkpoint by its
 * title, `SDXL/juggernautXL_v9.safetensors [abc123]` (its path under the models folder, then a short hash), and its
 * web UI takes that, the path alone, and the `model_name` it derives (`SDXL_juggernautXL_v9`). ComfyUI lists file
 * names, `SDXL/juggernautXL_v9.safetensors`. Any of these, with or without the extension or the folder, names it.
 */
export function checkpointAliases(title: string): string[] {
  const file = title.replace(/\s+\[[0-9a-fA-F]{6,}\]$/, "");
  const withoutExtension = (name: string) => name.replace(/\.(safetensors|ckpt|pt|pth|bin|gguf|sft)$/i, "");
  const base = file.split(/[\\/]/).at(-1)!;
  const modelName = withoutExtension(file).replace(/[\\/]/g, "_");
  return [...new Set([title, file, withoutExtension(file), modelName, base, withoutExtension(base)])];
}

/** Which of `titles` a name asks for: one, several (the name is ambiguous), or none. Exact titles win. */
export function matchCheckpoint(asked: string, titles: readonly string[]): string[] {
  if (titles.includes(asked)) return [asked];
  return titles.filter((title) => checkpointAliases(title).includes(asked));
}
