import { execa } from "execa";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { ClipTokenCounter } from "../../src/models/clipTokens.js";
import { PROJECT_ROOT, RUNNER_PYTHON } from "../helpers/paths.js";

/** The server's CLIP token count (for the prompt cap) against Hugging Face's CLIPTokenizer built from the same vocabulary, as the runner builds it. */
describe("ClipTokenCounter", () => {
  it("counts every prompt as transformers' CLIPTokenizer does", async () => {
    const vocab = path.join(PROJECT_ROOT, ".cache", "clip", "bpe_simple_vocab_16e6.txt.gz");
    const counter = ClipTokenCounter.load(vocab);
    expect(counter, `${vocab} (npm run setup fetches it)`).not.toBeNull();
    const prompts = [
      "a red fox in the snow, oil painting",
      "A photorealistic portrait of an old sailor, 85mm, bokeh!!!",
      "(masterpiece:1.3), best quality, ultra-detailed, 8k uhd, [cyberpunk|steampunk]",
      "it's the dog's toy; they'll say we'd 1234 cats",
      "東京の夜景、ネオンの光",
      "🦊🦊 an emoji fox 🌸✨",
      "Café déjà vu, naïve façade — Zürich",
      "  spaces \t\n and   tabs  ",
      "UPPER lower MiXeD",
      "a very detailed ".repeat(300) + "東京".repeat(100),
    ];
    const script = [
      "import json, sys, tempfile",
      "from diffusers_runner.clip_tokenizer import build_clip_tokenizer",
      "tokenizer = build_clip_tokenizer(sys.argv[1], tempfile.mkdtemp())",
      "print(json.dumps([len(tokenizer(text, add_special_tokens=False).input_ids) for text in json.loads(sys.argv[2])]))",
    ].join("\n");
    const { stdout } = await execa(RUNNER_PYTHON, ["-c", script, vocab, JSON.stringify(prompts)], { cwd: path.join(PROJECT_ROOT, "python"), env: { HF_HUB_OFFLINE: "1" } });
    const reference = JSON.parse(stdout.trim().split("\n").at(-1)!) as number[];
    expect(prompts.map((prompt) => counter!.count(prompt))).toEqual(reference);
  });
});
