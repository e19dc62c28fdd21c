import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { startHttpDoor, type HttpDoor } from "../../src/http/httpDoor.js";
import { generateImage } from "../../src/mcp/tools/generateImage.js";
import { selectImage } from "../../src/mcp/tools/selectImage.js";
import { startInProcess, type InProcessServer } from "../helpers/inProcess.js";

/**
 * The images-service REST API's answers, exactly, now that generate and select go through the MCP tools
 * (generate_image, select_image): REST's field names (cfg, seed: null, refiner as a name) in, REST's shapes out.
 */
describe("REST over the MCP tools (stand-in engine)", () => {
  let server: InProcessServer;
  let door: HttpDoor;
  const post = async (route: string, body: unknown) => {
    const response = await fetch(`${door.url}${route}`, { method: "POST", headers: { "content-type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body) });
    return { status: response.status, headers: response.headers, body: (await response.json()) as any };
  };
  const generate = (body: unknown) => post("/api/images/generate", body);
  const problem = (field: string | null, msg: string, type: string) => ({ loc: field ? ["body", field] : ["body"], msg, type });

  beforeAll(async () => {
    server = await startInProcess({ refinerEntry: true });
    door = await startHttpDoor(server.app, { host: "127.0.0.1", port: 0 });
  });

  afterEach(() => {
    vi.restoreAllMocks();
  });

  afterAll(async () => {
    await door?.close();
    await server?.close();
  });

  it("generate queues through generate_image, with REST's names as its arguments", async () => {
    const tool = vi.spyOn(generateImage, "handler");
    const queued = await generate({ prompt: "through the tool", model: "tiny_sdxl", width: 256, height: 320, steps: 3, cfg: 6.5, seed: 11, refiner: "tiny_sdxl_refiner", unknown_field: "ignored" });
    expect(queued).toMatchObject({ status: 200, body: { job_id: expect.any(String), status: "queued" } });
    expect(Object.keys(queued.body)).toEqual(["job_id", "status"]);
    expect(tool).toHaveBeenCalledTimes(1);
    expect(tool.mock.calls[0]![0]).toEqual({ prompt: "through the tool", model: "tiny_sdxl", width: 256, height: 320, steps: 3, cfg_scale: 6.5, seed: 11, refiner: true });
    const status = await server.ok("job_status", { jobId: queued.body.job_id });
    expect(status).toMatchObject({ jobId: queued.body.job_id });
  });

  it("KITTY's UI fields: a size word becomes the model family's portrait, landscape or square size; a style words the prompt and is recorded", async () => {
    const sized = async (body: Record<string, unknown>) => {
      const queued = await generate({ prompt: "a kettle", ...body });
      expect(queued.status, JSON.stringify(queued.body)).toBe(200);
      return (await server.app.queue.get(queued.body.job_id)).request;
    };
    // tiny_sd15 is an SD 1.5 folder (512² by default); tiny_sdxl's models.yaml entry defaults to 256².
    expect(await sized({ model: "tiny_sd15", size: "portrait" })).toMatchObject({ width: 512, height: 768 });
    expect(await sized({ model: "tiny_sd15", size: "landscape" })).toMatchObject({ width: 768, height: 512 });
    expect(await sized({ model: "tiny_sdxl", size: "portrait" })).toMatchObject({ width: 256, height: 384 });
    expect(await sized({ model: "tiny_sdxl", size: "square" })).toMatchObject({ width: 256, height: 256 });
    const styled = await generate({ prompt: "a kettle", model: "tiny_sd15", size: "portrait", style: "photo" });
    const request = (await server.app.queue.get(styled.body.job_id)).request;
    expect(request).toMatchObject({ prompt: "a kettle, 35mm photograph", negativePrompt: "cartoon", style: "photo", width: 512, height: 768 });
    const done = await server.ok("job_status", { jobId: styled.body.job_id, wait_seconds: 30 });
    expect(done.status).toBe("done");
    const [image] = await server.app.index.ofJob(styled.body.job_id);
    expect((image!.metadata.request as Record<string, unknown>).style).toBe("photo");
  });

  it("an unknown size word or style, or a size beside width, is a 422 naming the field and what is allowed", async () => {
    expect((await generate({ prompt: "x", size: "tall" })).body).toEqual({
      detail: [problem("size", "size must be one of square, portrait, landscape (or leave it out and give width and height)", "invalid_value")],
    });
    expect((await generate({ prompt: "x", size: "portrait", width: 512 })).body).toEqual({
      detail: [problem("size", "size says the shape and width/height the pixels: give one or the other", "invalid_argument")],
    });
    expect((await generate({ prompt: "x", style: "watercolour" })).body).toEqual({
      detail: [problem("style", "style 'watercolour' is not one of models.yaml's styles (blueprint, photo)", "invalid_argument")],
    });
  });

  it("upscale queues through upscale_image; its refusals are 422s naming the field, an unknown image a 404", async () => {
    const made = await generate({ prompt: "to enlarge", model: "tiny_sd15", width: 256, height: 256, seed: 4 });
    const key = (await server.ok("job_status", { jobId: made.body.job_id, wait_seconds: 10 })).images[0].key;
    const queued = await post("/api/images/upscale", { image: key, scale: 2 });
    expect(queued).toMatchObject({ status: 200, body: { job_id: expect.any(String), status: "queued" } });
    expect(await server.ok("job_status", { jobId: queued.body.job_id, wait_seconds: 10 })).toMatchObject({ status: "done", images: [{ width: 512, height: 512 }] });
    const bad = await post("/api/images/upscale", { image: key, scale: 3 });
    expect(bad).toMatchObject({ status: 422, body: { detail: [{ loc: ["body", "scale"], msg: "scale must be 2 or 4" }] } });
    const missing = await post("/api/images/upscale", { image: "images/20260101_000000_nothere.png" });
    expect(missing).toMatchObject({ status: 404, body: { detail: expect.stringContaining("is not an image of this server") } });
  });

  it("a null seed and a null refiner are left out of the tool's arguments; false and 'false' turn the refiner off", async () => {
    const tool = vi.spyOn(generateImage, "handler");
    expect((await generate({ prompt: "defaults", seed: null, refiner: null })).status).toBe(200);
    expect((await generate({ prompt: "off", model: "tiny_sdxl", refiner: " FALSE " })).status).toBe(200);
    expect((await generate({ prompt: "on", model: "tiny_sdxl", refiner: "True" })).status).toBe(200);
    expect(tool.mock.calls.map(([args]) => args)).toEqual([{ prompt: "defaults" }, { prompt: "off", model: "tiny_sdxl", refiner: false }, { prompt: "on", model: "tiny_sdxl", refiner: true }]);
  });

  it("a 422 lists every problem in REST's field order, cfg by its REST name", async () => {
    const refused = await generate({ refiner: 3, model: 5, seed: -1, cfg: 31, steps: 0, height: 300, width: 1001 });
    expect(refused.status).toBe(422);
    expect(refused.body).toEqual({
      detail: [
        problem("prompt", "prompt is required: a non-blank string of at most 2000 characters (got nothing)", "invalid_type"),
        problem("width", "width must be a multiple of 8 between 256 and 2048 (got 1001)", "not_multiple_of"),
        problem("height", "height must be a multiple of 8 between 256 and 2048 (got 300)", "not_multiple_of"),
        problem("steps", "steps must be an integer between 1 and 150 (got 0)", "too_small"),
        problem("cfg", "cfg must be a number between 0 and 30 (got 31)", "too_big"),
        problem("seed", "seed must be an integer between 0 and 4294967295 (got -1)", "too_small"),
        problem("model", "model must be a string: a name from models.yaml", "invalid_type"),
        problem("refiner", "refiner must be a refiner model name or true/false", "invalid_union"),
      ],
    });
  });

  it("a body that is not an object, or not JSON, is one problem with the whole body", async () => {
    expect(await generate([1])).toMatchObject({ status: 422, body: { detail: [problem(null, "Invalid input: expected object, received array", "invalid_type")] } });
    expect(await generate("null")).toMatchObject({ status: 422, body: { detail: [{ loc: ["body"], type: "invalid_type" }] } });
    expect(await generate("{nope")).toMatchObject({ status: 422, body: { detail: [{ loc: ["body"], type: "json_invalid", msg: expect.stringMatching(/^the request body is not JSON: /) }] } });
  });

  it("the tool's refusals after its argument rules are 422s naming REST's field, with the tool's code as type", async () => {
    expect((await generate({ prompt: "x", model: "nope" })).body.detail).toEqual([{ loc: ["body", "model"], msg: expect.stringContaining("'nope'"), type: "unknown_model" }]);
    expect((await generate({ prompt: "x", model: "missing_model" })).body.detail).toEqual([{ loc: ["body", "model"], msg: expect.stringContaining("is in models.yaml but"), type: "model_missing" }]);
    expect((await generate({ prompt: "x", model: "tiny_sd15", refiner: true })).body).toEqual({
      detail: [problem("refiner", "refiner applies to SDXL models only; model 'tiny_sd15' is sd15", "invalid_argument")],
    });
    expect((await generate({ prompt: "x", model: "tiny_sdxl", refiner: "tiny_sd15" })).body.detail).toEqual([
      problem("refiner", "refiner 'tiny_sd15' is not the refiner models.yaml gives model 'tiny_sdxl'; send true, or the name of its refiner entry", "invalid_argument"),
    ]);
    expect((await generate({ prompt: "x", model: "tiny_sd15", refiner: "tiny_sdxl_refiner" })).body.detail).toEqual([
      problem("refiner", "model 'tiny_sd15' has no refiner in models.yaml (asked for 'tiny_sdxl_refiner')", "invalid_argument"),
    ]);
  });

  it("nothing is queued for a refused generate", async () => {
    const before = await fetch(`${door.url}/api/images/stats`).then((response) => response.json());
    for (const body of [{ prompt: "x", width: 1001 }, { prompt: "x", model: "nope" }, { prompt: "x", model: "tiny_sdxl", refiner: "tiny_sd15" }]) expect((await generate(body)).status).toBe(422);
    expect(await fetch(`${door.url}/api/images/stats`).then((response) => response.json())).toEqual(before);
  });

  it("a database that cannot answer is the door's 503 with Retry-After, for generate and select alike", async () => {
    const locked = () => Object.assign(new Error("database is locked"), { code: "SQLITE_BUSY" });
    vi.spyOn(server.app.queue, "enqueue").mockRejectedValueOnce(locked());
    const refused = await generate({ prompt: "while locked" });
    expect(refused.status).toBe(503);
    expect(refused.headers.get("retry-after")).toBe("5");
    expect(refused.body).toEqual({ error: "database_busy", detail: expect.stringMatching(/^POST \/api\/images\/generate: another process has held the job database locked/) });
    vi.spyOn(server.app.index, "byKey").mockRejectedValueOnce(locked());
    const selectRefused = await post("/api/images/select", { key: "images/20260101_000000_deadbeef.png" });
    expect(selectRefused.status).toBe(503);
    expect(selectRefused.body).toMatchObject({ error: "database_busy", detail: expect.stringMatching(/^POST \/api\/images\/select: /) });
  });

  it("select answers through select_image: the imageRef with its key, 404 for a key it lacks, 422 naming key otherwise", async () => {
    const queued = await server.ok("generate_image", { prompt: "to select", model: "tiny_sd15", steps: 2 });
    const key: string = (await server.ok("job_status", { jobId: queued.jobId, wait_seconds: 10 })).images[0].key;
    const tool = vi.spyOn(selectImage, "handler");
    const selected = await post("/api/images/select", { key, index: 3, preview: true });
    expect(selected.status).toBe(200);
    // The in-process app has no /files base URL: its links are the local file's.
    const { imageRef } = await server.ok("select_image", { key });
    expect(selected.body).toEqual({ imageRef: { downloadUrl: imageRef.downloadUrl, storageUri: imageRef.storageUri, key } });
    expect(Object.keys(selected.body.imageRef)).toEqual(["downloadUrl", "storageUri", "key"]);
    expect(tool.mock.calls.map(([args]) => args)).toEqual([{ key }, { key }]);

    expect(await post("/api/images/select", { key: "images/20260101_000000_deadbeef.png" })).toMatchObject({ status: 404, body: { detail: "no image with key 'images/20260101_000000_deadbeef.png'" } });
    const missing = { status: 422, body: { detail: [problem("key", "key is required: an image key from /api/images/latest", "missing")] } };
    for (const body of [{}, { key: 5 }, { index: 1 }, "null", [key]]) expect(await post("/api/images/select", body)).toMatchObject(missing);
    const bad = await post("/api/images/select", { key: "" });
    expect(bad.status).toBe(422);
    expect(bad.body.detail).toEqual([{ loc: ["body", "key"], msg: expect.stringMatching(/^key must be an image key under 'images\/' ending in \.png.*\(got ""\)$/), type: "value_error" }]);
  });

  it("latest keeps its query check and its items' PNG size", async () => {
    expect(await fetch(`${door.url}/api/images/latest?limit=0`).then((response) => response.json())).toEqual({
      detail: [{ loc: ["query", "limit"], msg: 'limit must be an integer between 1 and 200 (got "0")', type: "value_error" }],
    });
    const { items } = (await fetch(`${door.url}/api/images/latest?limit=1`).then((response) => response.json())) as any;
    expect(items).toEqual([{ key: expect.stringMatching(/^images\/.*\.png$/), size: expect.any(Number), last_modified: expect.any(String) }]);
  });
});
