import { MAX_MESSAGE_BYTES } from "../../src/core/limits.js";
import { writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startHttpDoor, type HttpDoor } from "../../src/http/httpDoor.js";
import { LinkSigner } from "../../src/storage/signedLinks.js";
import { startInProcess, type InProcessServer } from "../helpers/inProcess.js";
import { makePng } from "../helpers/png.js";

/** node:http, so a test can send what fetch will not (its own Host, a chunked body). */
function raw(url: string, { method = "GET", headers = {}, body }: { method?: string; headers?: Record<string, string>; body?: string | Buffer[] } = {}) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const request = httpRequest(url, { method, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
    });
    request.on("error", reject);
    if (Array.isArray(body)) for (const chunk of body) request.write(chunk);
    else if (body !== undefined) request.write(body);
    request.end();
  });
}

describe("the HTTP door in-process: REST edge cases, file links, refusals (stand-in engine)", () => {
  let server: InProcessServer;
  let door: HttpDoor;
  const post = (route: string, body: unknown) => fetch(`${door.url}${route}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

  beforeAll(async () => {
    server = await startInProcess({ refinerEntry: true });
    door = await startHttpDoor(server.app, { host: "127.0.0.1", port: 0 });
  });

  afterAll(async () => {
    await door?.close();
    await server?.close();
  });

  it.each([
    ["a boolean true", true, 200],
    ["the refiner's entry name, as the old service took it", "tiny_sdxl_refiner", 200],
    ["the string false", "false", 200],
    ["null", null, 200],
    ["another entry's name", "tiny_sd15", 422],
  ])("REST generate takes refiner as %s", async (_name, refiner, status) => {
    const response = await post("/api/images/generate", { prompt: "refined", model: "tiny_sdxl", refiner });
    expect(response.status, await response.clone().text()).toBe(status);
    if (status === 422) expect(((await response.json()) as any).detail[0]).toMatchObject({ loc: ["body", "refiner"], msg: expect.stringContaining("not the refiner") });
  });

  it("names the field in a 422 for a model the catalog lacks or a refiner on SD 1.5", async () => {
    expect(((await (await post("/api/images/generate", { prompt: "x", model: "nope" })).json()) as any).detail[0]).toMatchObject({ loc: ["body", "model"], type: "unknown_model" });
    expect(((await (await post("/api/images/generate", { prompt: "x", model: "tiny_sd15", refiner: true })).json()) as any).detail[0]).toMatchObject({ loc: ["body", "refiner"] });
    expect(((await (await fetch(`${door.url}/api/images/generate`, { method: "POST", headers: { "content-type": "application/json" }, body: "not json at all" })).json()) as any).detail[0]).toMatchObject({ loc: ["body"] });
  });

  it("answers broken percent-encoding with 404, not a crash", async () => {
    expect((await raw(`${door.url}/api/images/jobs/%ZZ`)).status).toBe(404);
    expect((await raw(`${door.url}/files/images/%ZZ.png?exp=1&sig=x`)).status).toBe(404);
    expect((await fetch(`${door.url}/healthz`)).status).toBe(200);
  });

  it("serves a signed file link, and refuses one that is expired, for another key, or climbing out of the prefix", async () => {
    const queued = await server.ok("generate_image", { prompt: "linked", model: "tiny_sd15", steps: 2 });
    const key: string = (await server.ok("job_status", { jobId: queued.jobId, wait_seconds: 10 })).images[0].key;
    const signer = LinkSigner.forHome(server.app.config.home);
    const good = signer.link(door.url, key, 60).url;
    expect((await fetch(good)).status).toBe(200);
    expect((await fetch(good, { method: "POST" })).status).toBe(405);
    expect((await fetch(signer.link(door.url, key, -5).url)).status).toBe(403);
    expect((await fetch(good.replace(key, key.replace(".png", "0.png")))).status).toBe(403);
    expect((await raw(`${door.url}/files/images/..%2F..%2Flink-signing.key?exp=1&sig=x`)).status).toBe(404);
    expect((await raw(good, { headers: { host: "evil.example" } })).status).toBe(403);
  });

  it("takes a data: URL as REST generate's init_image, lists it as an upload apart from the generations, and refuses a server path", async () => {
    const png = makePng(300, 260, {}, (x, y) => ((x >> 5) + (y >> 5)) % 2 ? 230 : 20);
    const queued = await post("/api/images/generate", { prompt: "from a pasted image", model: "tiny_sd15", init_image: `data:image/png;base64,${png.toString("base64")}`, strength: 0.5 });
    expect(queued.status, await queued.clone().text()).toBe(200);
    const { items } = (await (await fetch(`${door.url}/api/images/uploads?limit=5`)).json()) as { items: Array<Record<string, any>> };
    expect(items[0]).toMatchObject({ key: expect.stringMatching(/^uploads\/[0-9a-f]{32}\.png$/), width: 300, height: 260, format: "PNG", from: "data" });
    expect(items[0]!.image_ref.storageUri).toMatch(/^file:\/\/.*uploads\//);
    const generations = (await (await fetch(`${door.url}/api/images/latest`)).json()) as { items: Array<{ key: string }> };
    expect(generations.items.some((item) => item.key.startsWith("uploads/"))).toBe(false);
    const path = await post("/api/images/generate", { prompt: "x", model: "tiny_sd15", init_image: "/etc/hostname" });
    expect(path.status).toBe(422);
    expect(((await path.json()) as any).detail[0]).toMatchObject({ loc: ["body", "init_image"], msg: expect.stringContaining("local file paths are read only for a client on this machine (stdio)") });
    expect((await fetch(`${door.url}/api/images/uploads?limit=0`)).status).toBe(422);
  });

  it("refuses an oversized body sent in chunks with 413", async () => {
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    const chunks = Array.from({ length: MAX_MESSAGE_BYTES / chunk.length + 1 }, () => chunk);
    const response = await raw(`${door.url}/api/images/generate`, { method: "POST", headers: { "transfer-encoding": "chunked", "content-type": "application/json" }, body: chunks });
    expect(response.status).toBe(413);
  });

  it("refuses a data dir whose link-signing key is damaged, instead of signing with it", () => {
    const home = server.app.config.home;
    const file = `${home}/link-signing.key`;
    writeFileSync(file, "");
    expect(() => LinkSigner.forHome(home)).toThrow(/does not hold a 32-byte hex key/);
  });
});
