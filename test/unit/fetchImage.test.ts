import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { fetchImage, isInwardAddress } from "../../src/uploads/fetchImage.js";
import { decodeDataUrl } from "../../src/uploads/imageInputs.js";
import { makePng } from "../helpers/png.js";

/** A real HTTP server on loopback: an image, a redirect to a host off the list, one into the list, a large body. */
describe("fetching an image URL: listed hosts only, no way inward, capped", () => {
  const png = makePng(64, 48);
  let server: Server;
  let port: number;
  const hits: string[] = [];

  beforeAll(async () => {
    server = createServer((request, response) => {
      hits.push(request.url ?? "");
      if (request.url === "/a.png") return response.writeHead(200, { "content-type": "image/png" }).end(png);
      if (request.url === "/away") return response.writeHead(302, { location: "http://elsewhere.invalid/a.png" }).end();
      if (request.url === "/around") return response.writeHead(301, { location: "/a.png" }).end();
      if (request.url === "/big") {
        response.writeHead(200, { "content-type": "image/png" });
        response.write(Buffer.alloc(600_000));
        return response.end(Buffer.alloc(600_000));
      }
      response.writeHead(404).end();
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it("fetches nothing when no host is listed (the default), saying how to allow one", async () => {
    await expect(fetchImage(`http://127.0.0.1:${port}/a.png`, "init_image", [], 1_000_000)).rejects.toThrow(/init_image: this server fetches no URLs \(set KITTY_IMAGES_FETCH_HOSTS/);
    expect(hits).toEqual([]);
  });

  it("fetches from a host listed by address, and follows a redirect that stays on the list", async () => {
    expect((await fetchImage(`http://127.0.0.1:${port}/a.png`, "init_image", ["127.0.0.1"], 1_000_000)).bytes.equals(png)).toBe(true);
    const around = await fetchImage(`http://127.0.0.1:${port}/around`, "init_image", ["127.0.0.1"], 1_000_000);
    expect(around).toMatchObject({ url: `http://127.0.0.1:${port}/a.png` });
    expect(around.bytes.equals(png)).toBe(true);
  });

  it("refuses a name listed as a name that resolves to loopback: the address itself must be listed", async () => {
    const before = hits.length;
    await expect(fetchImage(`http://localhost:${port}/a.png`, "mask", ["localhost"], 1_000_000)).rejects.toThrow(/mask: localhost resolves to (127\.0\.0\.1|::1), a loopback or private address/);
    expect(hits.length).toBe(before);
  });

  it("refuses a host off the list, a redirect off it, an answer that is not 200, and a body over the cap", async () => {
    await expect(fetchImage("http://example.com/a.png", "init_image", ["127.0.0.1"], 1_000_000)).rejects.toThrow(/example\.com is not a host this server fetches from/);
    await expect(fetchImage(`http://127.0.0.1:${port}/away`, "init_image", ["127.0.0.1"], 1_000_000)).rejects.toThrow(/elsewhere\.invalid is not a host this server fetches from/);
    await expect(fetchImage(`http://127.0.0.1:${port}/nothing`, "init_image", ["127.0.0.1"], 1_000_000)).rejects.toThrow(/answered 404/);
    await expect(fetchImage(`http://127.0.0.1:${port}/big`, "init_image", ["127.0.0.1"], 1_000_000)).rejects.toThrow(/over 1 MB; an image brought in is at most 1 MB/);
    await expect(fetchImage("ftp://127.0.0.1/a.png", "init_image", ["127.0.0.1"], 1_000_000)).rejects.toThrow(/is not an http\(s\) URL/);
  });

  it("counts loopback, private, link-local, CGNAT and mapped addresses as inward, public ones not", () => {
    for (const address of ["127.0.0.1", "10.1.2.3", "172.20.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1"]) {
      expect(isInwardAddress(address), address).toBe(true);
    }
    for (const address of ["93.184.216.34", "1.1.1.1", "2606:4700::1111"]) expect(isInwardAddress(address), address).toBe(false);
  });
});

describe("a data: URL", () => {
  it("decodes base64 and refuses, by its length before decoding, one over the cap; names the field in every refusal", () => {
    const png = makePng(8, 8);
    expect(decodeDataUrl(`data:image/png;base64,${png.toString("base64")}`, "init_image").equals(png)).toBe(true);
    expect(() => decodeDataUrl(`data:image/png;base64,${"A".repeat(28_000_000)}`, "mask")).toThrow(/mask is 21\.0 MB; an image brought in is at most 20 MB/);
    expect(() => decodeDataUrl("data:image/png,not-base64", "mask")).toThrow(/mask: the data: URL must be base64/);
    expect(() => decodeDataUrl("data:image/png;base64,***", "mask")).toThrow(/mask: the data: URL's base64 is broken/);
    expect(() => decodeDataUrl("data:text/html;base64,PGI+", "mask")).toThrow(/mask: a data: URL must look like data:image\/png;base64/);
  });
});
