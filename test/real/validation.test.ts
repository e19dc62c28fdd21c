import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { makeTestHome, startServer, type RunningServer } from "../helpers/server.js";
import { errorText } from "../helpers/toolCalls.js";
import { GENERATE_CASES, OTHER_TOOL_CASES } from "../helpers/validationCases.js";

describe("bad input gets an error that names the field and what is allowed; the server stays up", () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startServer(await makeTestHome(inject("tinyModelsDir")));
  });

  afterAll(async () => {
    await server?.close();
  });

  it.each(GENERATE_CASES)("generate_image rejects %s", async (_name, args, patterns) => {
    const result = await server.call("generate_image", args);
    expect(result.isError).toBe(true);
    const text = errorText(result);
    for (const pattern of patterns) expect(text).toMatch(pattern);
  });

  it("rejected calls queue nothing and the server keeps answering", async () => {
    const listing = await server.ok("list_latest_images", {});
    expect(listing.images).toEqual([]);
    const models = await server.ok("list_models", {});
    expect(models.models.map((model: { name: string }) => model.name)).toEqual(["tiny_sd15", "tiny_sdxl", "missing_model", "tiny_sd15_file"]);
    expect(models.models.find((model: { name: string }) => model.name === "missing_model")).toMatchObject({ present: false });
    expect(models.models.find((model: { name: string }) => model.name === "tiny_sdxl")).toMatchObject({ present: true, family: "sdxl", refiner: { present: true } });
  });

  it.each(OTHER_TOOL_CASES)("%s rejects %s", async (tool, _name, args, pattern) => {
    const result = await server.call(tool, args);
    expect(result.isError).toBe(true);
    expect(errorText(result)).toMatch(pattern);
  });
});
