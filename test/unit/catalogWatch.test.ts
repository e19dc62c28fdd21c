import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import pino from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { loadModelsYaml } from "../../src/models/catalog.js";
import { CatalogWatch, type CatalogChange } from "../../src/models/catalogWatch.js";
import { waitUntil } from "../helpers/waitUntil.js";

describe("CatalogWatch: models.yaml live", () => {
  let dir: string;
  let file: string;
  let watch: CatalogWatch;
  let changes: CatalogChange[];
  const folder = (name: string) => {
    const at = path.join(dir, name);
    mkdirSync(at, { recursive: true });
    writeFileSync(path.join(at, "model_index.json"), JSON.stringify({ _class_name: "StableDiffusionPipeline" }));
    return at;
  };

  beforeEach(() => {
    dir = mkdtempSync(path.join(tmpdir(), "kitty-catalog-"));
    file = path.join(dir, "models.yaml");
    writeFileSync(file, `sd15: ${folder("sd15")}\n`);
    const catalog = loadModelsYaml(file);
    changes = [];
    watch = new CatalogWatch(catalog, () => loadModelsYaml(file), pino({ level: "silent" }), (change) => void changes.push(change));
  });
  afterEach(() => {
    watch.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("adopts a valid edit into the catalog every holder has, and says what changed", async () => {
    const held = (watch as unknown as { catalog: ReturnType<typeof loadModelsYaml> }).catalog;
    writeFileSync(file, `sd15: ${folder("sd15")}\nsdxl:\n  path: ${folder("sdxl")}\n  defaults: {steps: 20}\n`);
    expect(await watch.check()).toEqual({ added: ["sdxl"], removed: [], changed: [], loras: false });
    expect(held.names()).toEqual(["sd15", "sdxl"]);
    expect(held.get("sdxl").defaults).toEqual({ steps: 20 });
    writeFileSync(file, `sdxl:\n  path: ${folder("sdxl")}\n  defaults: {steps: 30}\n`);
    expect(await watch.check()).toMatchObject({ added: [], removed: ["sd15"], changed: ["sdxl"] });
    expect(held.defaultModel).toBe("sdxl");
    expect(changes).toHaveLength(2);
    expect(watch.current).toMatchObject({ models: 1, problem: null });
  });

  it("keeps the last good catalog on a broken edit, says why (with the line), and clears it when fixed", async () => {
    const held = (watch as unknown as { catalog: ReturnType<typeof loadModelsYaml> }).catalog;
    writeFileSync(file, `sd15: ${folder("sd15")}\n  bad: [indent\n`);
    expect(await watch.check()).toBeNull();
    expect(held.names()).toEqual(["sd15"]);
    expect(watch.current.problem?.message).toMatch(/models\.yaml/);
    expect(watch.current.problem?.message).toMatch(/line 2/);
    writeFileSync(file, `sd15:\n  path: ${folder("sd15")}\n  engine: nonsense\n`);
    await watch.check();
    expect(watch.current.problem?.message).toMatch(/engine/);
    expect(held.names()).toEqual(["sd15"]);
    writeFileSync(file, `sd15: ${folder("sd15")}\nother: ${folder("other")}\n`);
    expect(await watch.check()).toMatchObject({ added: ["other"] });
    expect(watch.current.problem).toBeNull();
    expect(changes.map((change) => change.added)).toEqual([["other"]]);
  });

  it("ignores a save that changes nothing, and hears an edit by itself once started (an editor's rename included)", async () => {
    writeFileSync(file, `sd15: ${folder("sd15")}\n`);
    expect(await watch.check()).toBeNull();
    watch.start();
    const next = path.join(dir, "models.yaml.tmp");
    writeFileSync(next, `sd15: ${folder("sd15")}\nlater: ${folder("later")}\n`);
    const { renameSync } = await import("node:fs");
    renameSync(next, file);
    await waitUntil("the watch adopts the renamed file", () => changes.some((change) => change.added.includes("later")), { timeoutMs: 10_000 });
  });

  it("hears LoRAs dropped into the folder", async () => {
    const loras = path.join(dir, "loras");
    mkdirSync(loras);
    writeFileSync(file, `sd15: ${folder("sd15")}\nloras: ${loras}\n`);
    expect(await watch.check()).toMatchObject({ loras: true });
    writeFileSync(path.join(loras, "detail.safetensors"), Buffer.concat([Buffer.from([2, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("{}")]));
    expect(await watch.check()).toEqual({ added: [], removed: [], changed: [], loras: true });
    expect(await watch.check()).toBeNull();
  });
});
