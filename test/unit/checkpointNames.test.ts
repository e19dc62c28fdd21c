import { describe, expect, it } from "vitest";
import { ModelCatalog, type ModelEntry } from "../../src/models/catalog.js";
import { checkpointAliases, matchCheckpoint } from "../../src/models/checkpointNames.js";

const entry = (name: string, engineModel: string, engine: ModelEntry["engine"] = "a1111"): ModelEntry => ({
  name,
  engine,
  engineModel,
  path: "",
  declaredFamily: null,
  refinerPath: null,
  configPath: null,
  defaults: {},
  description: null,
});

describe("the names a checkpoint on another app answers to", () => {
  it("an A1111 title: itself, its path, the path without extension, A1111's model_name, the file name with and without extension", () => {
    expect(checkpointAliases("SDXL/juggernautXL_v9.safetensors [abc12345]")).toEqual([
      "SDXL/juggernautXL_v9.safetensors [abc12345]",
      "SDXL/juggernautXL_v9.safetensors",
      "SDXL/juggernautXL_v9",
      "SDXL_juggernautXL_v9",
      "juggernautXL_v9.safetensors",
      "juggernautXL_v9",
    ]);
  });

  it("a ComfyUI file name, with or without its extension", () => {
    expect(matchCheckpoint("sd_xl_base_1.0", ["sd_xl_base_1.0.safetensors", "v1-5.ckpt"])).toEqual(["sd_xl_base_1.0.safetensors"]);
    expect(matchCheckpoint("v1-5.ckpt", ["sd_xl_base_1.0.safetensors", "v1-5.ckpt"])).toEqual(["v1-5.ckpt"]);
    expect(matchCheckpoint("nothing", ["v1-5.ckpt"])).toEqual([]);
  });

  it("a name two checkpoints answer to matches both; an exact title wins over any alias", () => {
    expect(matchCheckpoint("same", ["a/same.safetensors [1111111111]", "b/same.ckpt [2222222222]"])).toEqual(["a/same.safetensors [1111111111]", "b/same.ckpt [2222222222]"]);
    expect(matchCheckpoint("same.ckpt", ["same.ckpt", "x/same.ckpt"])).toEqual(["same.ckpt"]);
  });

  it("ModelCatalog.get resolves an alias to the entry's own name, refuses an ambiguous one naming both, and leaves diffusers entries alone", () => {
    const catalog = new ModelCatalog(
      [entry("juggernaut", "juggernautXL_v9.safetensors [abc123]"), entry("a/same.safetensors [1111111111]", "a/same.safetensors [1111111111]"), entry("b/same.ckpt [2222222222]", "b/same.ckpt [2222222222]", "comfyui"), { ...entry("local", "local_model"), engine: "diffusers" }],
      "juggernaut",
      null,
    );
    expect(catalog.get("juggernautXL_v9").name).toBe("juggernaut");
    expect(catalog.get("juggernautXL_v9.safetensors").name).toBe("juggernaut");
    expect(() => catalog.get("same")).toThrow("model 'same' could be any of 'a/same.safetensors [1111111111]', 'b/same.ckpt [2222222222]'; name one of them in full");
    expect(catalog.get("a_same").name).toBe("a/same.safetensors [1111111111]");
    expect(() => catalog.get("local_model")).toThrow(/is not in models.yaml/);
  });
});
