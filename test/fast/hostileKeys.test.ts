import { mkdirSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import path from "node:path";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi, type MockInstance } from "vitest";
import { KittyError } from "../../src/core/errors.js";
import { startHttpDoor, type HttpDoor } from "../../src/http/httpDoor.js";
import { LocalImageStore } from "../../src/storage/local.js";
import { LinkSigner } from "../../src/storage/signedLinks.js";
import { startInProcess, type InProcessServer } from "../helpers/inProcess.js";
import { makePng } from "../helpers/png.js";
import { errorText } from "../helpers/toolCalls.js";
import { HOSTILE_KEY_REFUSAL, HOSTILE_KEYS } from "../helpers/validationCases.js";

/** GET of a path exactly as given (fetch and URL would resolve its dots); a connection the server cuts reads as status 0. */
function getRawPath(baseUrl: string, rawPath: string): Promise<{ status: number; body: string }> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve) => {
    const request = httpRequest({ host: hostname, port, path: rawPath, method: "GET" }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks).toString("latin1") }));
    });
    request.on("error", () => resolve({ status: 0, body: "" }));
    request.end();
  });
}

describe("hostile image keys: refused by select_image, REST select and /files before the index or storage sees them", () => {
  let server: InProcessServer;
  let door: HttpDoor;
  let filesRoot: string;
  let signer: LinkSigner;
  const spies: MockInstance[] = [];
  const touched = () => spies.flatMap((spy) => spy.mock.calls.map((args) => `${spy.getMockName()}(${String(args[0]).slice(0, 60)})`));

  beforeAll(async () => {
    server = await startInProcess();
    door = await startHttpDoor(server.app, { host: "127.0.0.1", port: 0 });
    filesRoot = path.join(server.app.config.home, "files");
    signer = LinkSigner.forHome(server.app.config.home);
    // What a climbing or aliasing key would reach if a door let it through: a real image, and files beside the folder.
    mkdirSync(path.join(filesRoot, "images"), { recursive: true });
    writeFileSync(path.join(filesRoot, "images", "x.png"), makePng(8, 8));
    for (const name of ["secret.png", "x.png"]) writeFileSync(path.join(filesRoot, name), "SECRET");
    const store = server.app.store as LocalImageStore;
    for (const method of ["fileFor", "readImage", "readSidecar", "storageUri", "downloadUrl"] as const) spies.push(vi.spyOn(store, method).mockName(`store.${method}`));
    spies.push(vi.spyOn(server.app.index, "byKey").mockName("index.byKey"));
  });

  beforeEach(() => {
    for (const spy of spies) spy.mockClear();
  });

  afterAll(async () => {
    vi.restoreAllMocks();
    await door?.close();
    await server?.close();
  });

  it.each(HOSTILE_KEYS)("select_image refuses %s, naming key and what it may be", async (_name, key) => {
    const result = await server.call("select_image", { key });
    expect(result.isError).toBe(true);
    const text = errorText(result);
    expect(text).toMatch(/^invalid_argument: /);
    expect(text).toMatch(HOSTILE_KEY_REFUSAL);
    expect(text.length, "the refusal quotes the key cut short").toBeLessThan(600);
    expect(touched()).toEqual([]);
  });

  it.each(HOSTILE_KEYS)("REST select refuses %s with a 422 naming key", async (_name, key) => {
    const response = await fetch(`${door.url}/api/images/select`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ key }) });
    expect(response.status).toBe(422);
    const body = (await response.json()) as { detail: Array<{ loc: string[]; msg: string; type: string }> };
    expect(body.detail).toHaveLength(1);
    expect(body.detail[0]).toMatchObject({ loc: ["body", "key"], type: "value_error" });
    expect(body.detail[0]!.msg).toMatch(HOSTILE_KEY_REFUSAL);
    expect(touched()).toEqual([]);
  });

  it.each(HOSTILE_KEYS)("a /files link for %s serves nothing, signed or typed by hand", async (_name, key) => {
    // Signed: what this server's own signer would make of the key. Typed: the key as an attacker puts it in a path.
    const signed = new URL(signer.link(door.url, key, 60).url);
    const typed = key.replace(/[^\x21-\x7e]/gu, (character) => encodeURIComponent(character));
    for (const rawPath of [`${signed.pathname}${signed.search}`, `/files/${typed}?exp=${signed.searchParams.get("exp")}&sig=x`]) {
      const { status, body } = await getRawPath(door.url, rawPath);
      // 0: Node's parser cut a 1 MB request line off before any route ran.
      expect([0, 403, 404, 431], rawPath.slice(0, 80)).toContain(status);
      expect(body).not.toContain("SECRET");
      expect(body).not.toContain("\x89PNG");
    }
    expect(touched()).toEqual([]);
  });

  it.each(HOSTILE_KEYS)("the local folder keeps %s inside itself, or refuses it", (_name, key) => {
    const store = new LocalImageStore(filesRoot);
    let file: string;
    try {
      file = store.fileFor(key);
    } catch (error) {
      expect(error).toBeInstanceOf(KittyError);
      expect((error as KittyError).field).toBe("key");
      return;
    }
    const inside = path.relative(filesRoot, file);
    expect(inside === ".." || inside.startsWith(`..${path.sep}`) || path.isAbsolute(inside), file.slice(0, 120)).toBe(false);
  });

  it("a well-formed key still reaches the index (the refusals above are the keys, not the route)", async () => {
    const result = await server.call("select_image", { key: "images/20260101_000000_deadbeef.png" });
    expect(errorText(result)).toMatch(/not_found: no image with key/);
    expect(touched()).toEqual(["index.byKey(images/20260101_000000_deadbeef.png)"]);
  });
});
