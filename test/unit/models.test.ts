import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { loadConfig } from "../../src/config.js";
import { parseModelsYaml } from "../../src/models/catalog.js";
import { familyOfTensors } from "../../src/models/loraFiles.js";
import { inspectEntry, inspectModelFolder } from "../../src/models/modelFolder.js";
import { resolveRequest } from "../../src/models/resolveRequest.js";

function modelFolder(root: string, name: string, className: string): string {
  const folder = path.join(root, name);
  mkdirSync(folder, { recursive: true });
  writeFileSync(path.join(folder, "model_index.json"), JSON.stringify({ _class_name: className }));
  return folder;
}

describe("models.yaml", () => {
  it("reads the original flat form: name -> diffusers folder", () => {
    const catalog = parseModelsYaml("sdxl_base: /Users/Shared/KITTY/models/sd_xl_base\nsd15: ./sd15\n", "/etc/kitty/models.yaml");
    expect(catalog.names()).toEqual(["sdxl_base", "sd15"]);
    expect(catalog.get("sd15").path).toBe("/etc/kitty/sd15");
    expect(catalog.defaultModel).toBe("sdxl_base");
  });

  it("runs an entry on another engine by that engine's own model name, and refuses a half-made one", () => {
    const yaml = [
      "local_sdxl: /models/sdxl",
      "webui:",
      "  engine: a1111",
      "  model: juggernautXL_v9.safetensors [abc123]",
      "  defaults: {steps: 25}",
      "",
    ].join("\n");
    const catalog = parseModelsYaml(yaml, "/etc/kitty/models.yaml");
    expect(catalog.get("local_sdxl")).toMatchObject({ engine: "diffusers", engineModel: null, path: "/models/sdxl" });
    expect(catalog.get("webui")).toMatchObject({ engine: "a1111", engineModel: "juggernautXL_v9.safetensors [abc123]", path: "", defaults: { steps: 25 } });
    // Under IMAGE_ENGINE=a1111 a flat entry names the web UI's checkpoint, as the original service read it.
    expect(parseModelsYaml("webui: v1-5-pruned.safetensors\n", "/m.yaml", undefined, undefined, "a1111").get("webui")).toMatchObject({ engine: "a1111", engineModel: "v1-5-pruned.safetensors", path: "" });
    expect(() => parseModelsYaml("x:\n  engine: a1111\n  path: /models/x\n", "/m.yaml")).toThrow("entry 'x' runs on a1111, which keeps its own models: give 'model' (its name there), not path, refiner or config");
    expect(() => parseModelsYaml("x:\n  model: something\n", "/m.yaml")).toThrow("entry 'x' gives 'model', which names a model another engine keeps; add 'engine: a1111' (or comfyui, invokeai) or drop it");
    expect(() => parseModelsYaml("x:\n  family: sdxl\n", "/m.yaml")).toThrow("entry 'x' needs a path");
    expect(() => parseModelsYaml("x:\n  engine: comfy\n  model: m\n", "/m.yaml")).toThrow("or 'name: {engine: a1111|comfyui|invokeai, model?, workflow?, family?, defaults?}'");
  });

  it("checks a ComfyUI workflow when models.yaml is read: API format, and a sampler and prompt it can fill", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "kitty-wf-"));
    const write = (name: string, body: unknown) => writeFileSync(path.join(dir, name), JSON.stringify(body));
    const entry = (file: string) => `x:\n  engine: comfyui\n  workflow: ${path.join(dir, file)}\n`;
    write("ui.json", { nodes: [], links: [], version: 0.4 });
    expect(() => parseModelsYaml(entry("ui.json"), "/m.yaml")).toThrow('is in the editor\'s format; export it with "Save (API Format)"');
    write("nosampler.json", { "1": { class_type: "SaveImage", inputs: {} } });
    expect(() => parseModelsYaml(entry("nosampler.json"), "/m.yaml")).toThrow("has no single KSampler or KSamplerAdvanced for the sampler: title the node 'kitty:sampler'");
    write("ok.json", {
      "1": { class_type: "KSampler", inputs: { positive: ["2", 0] } },
      "2": { class_type: "CLIPTextEncode", inputs: { text: "" } },
      "3": { class_type: "SaveImage", inputs: {} },
    });
    expect(parseModelsYaml(entry("ok.json"), "/m.yaml").get("x")).toMatchObject({ engine: "comfyui", workflowPath: path.join(dir, "ok.json") });
    expect(() => parseModelsYaml(`x:\n  path: /m/x\n  workflow: ${path.join(dir, "ok.json")}\n`, "/m.yaml")).toThrow("gives a workflow, which only ComfyUI runs: add 'engine: comfyui'");
  });

  it("takes hf:org/name from the local Hugging Face cache, and says how to fetch one that is not there", () => {
    const hub = mkdtempSync(path.join(tmpdir(), "kitty-hub-"));
    const repo = path.join(hub, "models--someone--tiny-sd15");
    mkdirSync(path.join(repo, "refs"), { recursive: true });
    writeFileSync(path.join(repo, "refs", "main"), "0123abcd\n");
    const snapshot = modelFolder(path.join(repo, "snapshots"), "0123abcd", "StableDiffusionPipeline");
    modelFolder(path.join(repo, "snapshots"), "older", "StableDiffusionPipeline");
    const catalog = parseModelsYaml("cached: hf:someone/tiny-sd15\nabsent: hf:someone/not-downloaded\n", "/etc/models.yaml", undefined, hub);
    expect(catalog.get("cached").path).toBe(snapshot);
    expect(inspectModelFolder(catalog.get("cached").path)).toEqual({ present: true, family: "sd15", problem: null });
    expect(catalog.get("absent").path).toBe("hf:someone/not-downloaded");
    expect(inspectModelFolder(catalog.get("absent").path)).toMatchObject({
      present: false,
      problem: expect.stringContaining("not in the local cache (HF_HUB_CACHE, else HF_HOME/hub); download it once: hf download someone/not-downloaded"),
    });
    expect(() => resolveRequest({ prompt: "p", model: "absent" }, catalog)).toThrow(/hf download someone\/not-downloaded/);
  });

  it("reads richer entries beside flat ones, with a refiner given by name", () => {
    const catalog = parseModelsYaml(
      ["refiner_1: /m/refiner", "sdxl:", "  path: /m/base", "  refiner: refiner_1", "  defaults: {steps: 40, cfg_scale: 6, refiner: true}"].join("\n"),
      "/etc/models.yaml",
    );
    expect(catalog.get("sdxl")).toMatchObject({ path: "/m/base", refinerPath: "/m/refiner", defaults: { steps: 40, cfgScale: 6, refiner: true } });
  });

  it("says which entry is wrong and what shape is allowed", () => {
    expect(() => parseModelsYaml("sdxl:\n  folder: /m\n", "/x/models.yaml")).toThrow(/entry 'sdxl.*' is invalid.*name: \/path\/to\/diffusers-folder/);
    expect(() => parseModelsYaml("- a\n- b\n", "/x/models.yaml")).toThrow(/must be a map/);
    expect(() => parseModelsYaml("xl:\n  path: /m\n  defaults: {width: 1000}\n", "/x/models.yaml")).not.toThrow();
    expect(() => parseModelsYaml("xl:\n  path: /m\n  defaults: {width: 1001}\n", "/x/models.yaml")).toThrow(/entry 'xl.defaults.width' is invalid/);
    expect(() => parseModelsYaml("xl:\n  path: /m\n  defaults: {steps: 500}\n", "/x/models.yaml")).toThrow(/entry 'xl.defaults.steps' is invalid/);
  });

  it("names the known models when one is unknown", () => {
    const catalog = parseModelsYaml("a: /a\nb: /b\n", "/x/models.yaml");
    expect(() => catalog.get("c")).toThrow("model 'c' is not in models.yaml (known: a, b)");
  });

  it("reads the family from model_index.json, as diffusers does", () => {
    const root = mkdtempSync(path.join(tmpdir(), "kitty-models-"));
    expect(inspectModelFolder(modelFolder(root, "xl", "StableDiffusionXLPipeline"))).toMatchObject({ present: true, family: "sdxl" });
    expect(inspectModelFolder(modelFolder(root, "v15", "StableDiffusionPipeline"))).toMatchObject({ present: true, family: "sd15" });
    expect(inspectModelFolder(modelFolder(root, "flux", "FluxPipeline"))).toMatchObject({ present: true, family: "flux" });
    expect(inspectModelFolder(modelFolder(root, "kandinsky", "KandinskyV22Pipeline"))).toMatchObject({ present: true, unsupported: true, problem: expect.stringMatching(/names KandinskyV22Pipeline, which this server does not run \(it runs: StableDiffusionPipeline, .*ZImagePipeline, .*Krea2Pipeline\)/) });
    expect(inspectModelFolder(path.join(root, "nothing"))).toMatchObject({ present: false });
  });

  it("tells a LoRA's family from its tensor names, and leaves a transformer family's to the runner rather than call it SDXL", () => {
    const lora = (...names: string[]) => Object.fromEntries(names.map((name) => [name, { shape: [4, 2048] }]));
    expect(familyOfTensors(lora("lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"))).toBe("sdxl");
    expect(familyOfTensors(lora("unet.down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q.lora_A.weight"))).toBe("sdxl");
    // FLUX.1 (diffusers, kohya and BFL names): its transformer_blocks.1 is no SDXL transformer stack.
    expect(familyOfTensors(lora("transformer.transformer_blocks.1.attn.to_q.lora_A.weight"))).toBeNull();
    expect(familyOfTensors(lora("lora_unet_double_blocks_1_img_attn_qkv.lora_down.weight"))).toBeNull();
    expect(familyOfTensors(lora("diffusion_model.layers.3.attention.to_q.lora_A.weight"))).toBeNull();
  });

  it("refuses a newer family on ComfyUI's built-in SD graph, and lets a web UI that names it run it", () => {
    const root = mkdtempSync(path.join(tmpdir(), "kitty-models-"));
    const catalog = parseModelsYaml(
      "comfy_flux:\n  engine: comfyui\n  model: flux1-dev.safetensors\n  family: flux\nforge_flux:\n  engine: a1111\n  model: flux1-dev\n  family: flux\n",
      path.join(root, "models.yaml"),
    );
    expect(() => resolveRequest({ prompt: "p", model: "comfy_flux" }, catalog)).toThrow(/declared flux, and the built-in comfyui graph is SD 1\.5's or SDXL's: give it a workflow/);
    expect(resolveRequest({ prompt: "p", model: "forge_flux" }, catalog)).toMatchObject({ width: 1024, steps: 28, cfgScale: 3.5, model: { engine: "a1111", family: "flux" } });
  });

  it("refuses a UNet-only file before queueing, as doctor does, naming what it is; with a base: it is a model", () => {
    const root = mkdtempSync(path.join(tmpdir(), "kitty-models-"));
    const file = path.join(root, "unet-only.safetensors");
    const header = Buffer.from(JSON.stringify({ "model.diffusion_model.input_blocks.0.0.weight": { dtype: "F16", shape: [1], data_offsets: [0, 2] } }));
    const size = Buffer.alloc(8);
    size.writeBigUInt64LE(BigInt(header.length));
    writeFileSync(file, Buffer.concat([size, header, Buffer.alloc(2)]));
    const base = modelFolder(root, "sdxl", "StableDiffusionXLPipeline");
    const catalog = parseModelsYaml(`unet: ${file}
with_base:
  path: ${file}
  base: ${base}
`, path.join(root, "models.yaml"));
    expect(() => resolveRequest({ prompt: "p", model: "unet" }, catalog)).toThrow(`model 'unet': ${file} is not a checkpoint in Stability AI's layout; supported: SD 1.5, SDXL base, SDXL refiner`);
    expect(resolveRequest({ prompt: "p", model: "with_base" }, catalog)).toMatchObject({ model: { path: file, basePath: base } });
  });

  it("takes base: beside a single file only, and reads the family from the base folder", () => {
    const root = mkdtempSync(path.join(tmpdir(), "kitty-models-"));
    const base = modelFolder(root, "flux", "FluxPipeline");
    const file = path.join(root, "flux-finetune.safetensors");
    writeFileSync(file, "");
    const catalog = parseModelsYaml(`finetune:\n  path: ${file}\n  base: ${base}\n`, path.join(root, "models.yaml"));
    expect(catalog.get("finetune").basePath).toBe(base);
    expect(inspectEntry(catalog.get("finetune"))).toMatchObject({ present: true, family: "flux" });
    expect(inspectEntry({ path: path.join(root, "gone.safetensors"), basePath: base })).toMatchObject({ present: false, problem: expect.stringMatching(/gone\.safetensors does not exist/) });
    expect(() => parseModelsYaml(`folder:\n  path: ${base}\n  base: ${base}\n`, path.join(root, "models.yaml"))).toThrow(/gives a base, which goes with a path to one \.safetensors file/);
  });

  it("fills per-family defaults: SDXL 1024² and SD 1.5 512² with Euler Ancestral; the refiner pass stays short", () => {
    const root = mkdtempSync(path.join(tmpdir(), "kitty-models-"));
    const xl = modelFolder(root, "xl", "StableDiffusionXLPipeline");
    const refiner = modelFolder(root, "ref", "StableDiffusionXLImg2ImgPipeline");
    const v15 = modelFolder(root, "v15", "StableDiffusionPipeline");
    const catalog = parseModelsYaml(`xl:\n  path: ${xl}\n  refiner: ${refiner}\nv15: ${v15}\n`, path.join(root, "models.yaml"));
    expect(resolveRequest({ prompt: "p", seed: 1 }, catalog)).toMatchObject({ width: 1024, height: 1024, steps: 30, cfgScale: 7, scheduler: null, refiner: null });
    expect(resolveRequest({ prompt: "p", model: "v15" }, catalog)).toMatchObject({ width: 512, height: 512, steps: 30, scheduler: "euler_a" });
    expect(resolveRequest({ prompt: "p", refiner: true, steps: 80, cfgScale: 9 }, catalog).refiner).toEqual({ mode: "ensemble", steps: 10, cfgScale: 5, switchAt: 0.8, strength: 0.3 });
    expect(resolveRequest({ prompt: "p", refiner: true, steps: 30 }, catalog).refiner).toMatchObject({ steps: 6 });
    const seeds = new Set(Array.from({ length: 5 }, () => resolveRequest({ prompt: "p" }, catalog).seed));
    expect(seeds.size).toBeGreaterThan(1);
  });
});

describe("config", () => {
  it("keeps the images-service env names and their defaults", () => {
    const yaml = path.join(mkdtempSync(path.join(tmpdir(), "kitty-config-")), "models.yaml");
    writeFileSync(yaml, "a: /a\n");
    const local = loadConfig({ MODELS_YAML: yaml, KITTY_IMAGES_HOME: "/data/kitty" });
    expect(local).toMatchObject({ engine: "diffusers", storage: { kind: "local" }, keyPrefix: "images/", presignTtlSeconds: 86400, databasePath: "/data/kitty/kitty-images.sqlite" });
    const s3 = loadConfig({ MODELS_YAML: yaml, S3_ENDPOINT_URL: "http://127.0.0.1:9000", S3_ACCESS_KEY: "k", S3_SECRET_KEY: "s", S3_PREFIX: "renders" });
    expect(s3).toMatchObject({ storage: { kind: "s3", s3: { endpoint: "http://127.0.0.1:9000", bucket: "kitty-artifacts", accessKeyId: "k" } }, keyPrefix: "renders/" });
  });

  it("says which variable is wrong", () => {
    expect(() => loadConfig({ IMAGE_ENGINE: "dalle" })).toThrow(/IMAGE_ENGINE/);
    expect(() => loadConfig({ S3_ENDPOINT_URL: "not a url" })).toThrow(/S3_ENDPOINT_URL/);
    expect(() => loadConfig({ MODELS_YAML: "/no/such/models.yaml" })).toThrow(/MODELS_YAML points at \/no\/such\/models.yaml/);
  });
});
