import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { GenerationRequest } from "../../src/core/generation.js";
import { parseModelsYaml } from "../../src/models/catalog.js";
import { localizeRequest } from "../../src/models/localizeRequest.js";
import { inspectModel } from "../../src/models/resolveRequest.js";
import { modelsOfWorkers } from "../../src/models/workerModels.js";

const request = (model: Partial<GenerationRequest["model"]>, loras?: GenerationRequest["loras"]): GenerationRequest => ({
  prompt: "p",
  negativePrompt: null,
  model: { name: "sdxl", path: "/Users/Shared/KITTY/models/sdxl", refinerPath: null, ...model },
  width: 1024,
  height: 1024,
  steps: 30,
  cfgScale: 7,
  seed: 1,
  scheduler: null,
  refiner: null,
  ...(loras && { loras }),
});

describe("a job queued on one host, run on another", () => {
  const workerYaml = parseModelsYaml(
    ["sdxl:", "  path: /data/models/sdxl", "  refiner: /data/models/sdxl-refiner", "sd15: /data/models/sd15", ""].join("\n"),
    "/data/models.yaml",
  );

  it("runs with the worker's own folders for the model's name", () => {
    const local = localizeRequest(request({ refinerPath: "/Users/Shared/KITTY/models/refiner" }), workerYaml, "cuda-box");
    expect(local.model).toMatchObject({ name: "sdxl", path: "/data/models/sdxl", refinerPath: "/data/models/sdxl-refiner", configPath: null });
    expect(localizeRequest(request({}), workerYaml, "cuda-box").model.refinerPath).toBeNull();
  });

  it("says what the worker lacks: the model, its refiner, a LoRA", () => {
    expect(() => localizeRequest(request({ name: "flux" }), workerYaml, "cuda-box")).toThrow("worker 'cuda-box' has no model 'flux' in its models.yaml (/data/models.yaml)");
    expect(() => localizeRequest(request({ name: "sd15", refinerPath: "/x" }), workerYaml, "cuda-box")).toThrow("worker 'cuda-box' has model 'sd15' without a refiner");
    expect(() => localizeRequest(request({}, [{ name: "detail", path: "/x/detail.safetensors", weight: 1 }]), workerYaml, "cuda-box")).toThrow(
      "worker 'cuda-box' has no LoRA 'detail' in its LoRA folder (none configured in its models.yaml)",
    );
  });
});

describe("a front-end with no model folders", () => {
  const dirs: string[] = [];
  afterEach(() => dirs.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  type Report = Parameters<typeof modelsOfWorkers>[0][number];
  const worker = (alive: boolean, modelInfo: Report["modelInfo"], loras: Report["loras"] = [], models = Object.keys(modelInfo)): Report => ({ alive, models, modelInfo, loras });
  const workers = [
    worker(true, { sdxl: { family: "sdxl", refiner: false } }),
    worker(true, { sdxl: { family: "sdxl", refiner: true }, sd15: { family: "sd15", refiner: false } }, [{ name: "detail", family: "sdxl" }]),
    // Silent for good (a host killed and never back): what it had does not count.
    worker(false, { flux: { family: "sdxl", refiner: false } }, [{ name: "gone", family: null }]),
    // Registered by a worker of an older version: its models by name, nothing more.
    worker(true, {}, [], ["legacy"]),
  ];

  it("takes a model's family and refiner, and a LoRA's family, from the live workers that have them, merged", () => {
    const elsewhere = modelsOfWorkers(workers);
    expect(elsewhere.model("sdxl")).toEqual({ family: "sdxl", refiner: true });
    expect(elsewhere.model("sd15")).toEqual({ family: "sd15", refiner: false });
    expect(elsewhere.model("legacy")).toEqual({ family: null, refiner: false });
    expect(elsewhere.model("flux")).toBeNull();
    expect(elsewhere.lora("detail")).toEqual({ family: "sdxl" });
    expect(elsewhere.lora("gone")).toBeNull();
  });

  it("looks at its own disk first, then at what the workers report", () => {
    const dir = mkdtempSync(path.join(tmpdir(), "kitty-frontend-"));
    dirs.push(dir);
    const catalog = parseModelsYaml(`sd15: ${path.join(dir, "sd15")}\nflux: ${path.join(dir, "flux")}\n`, path.join(dir, "models.yaml"));
    const elsewhere = modelsOfWorkers(workers);
    expect(inspectModel(catalog.get("sd15"), elsewhere)).toEqual({ present: true, family: "sd15", problem: null });
    const missing = inspectModel(catalog.get("flux"), elsewhere);
    expect(missing.present).toBe(false);
    expect(missing.problem).toContain(path.join(dir, "flux"));
    expect(inspectModel(catalog.get("sd15")).present).toBe(false);
  });
});
