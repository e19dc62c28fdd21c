import { lookup } from "node:dns/promises";
import http from "node:http";
import https from "node:https";
import { BlockList, isIP, type LookupFunction } from "node:net";
import { KittyError } from "../core/errors.js";

const MAX_REDIRECTS = 3;
const TIMEOUT_MS = 20_000;

/**
 * Addresses a fetched URL may not reach unless the operator lists the address itself: this machine, its networks,
 * link-local (cloud metadata at 169.254.169.254), and the like. A listed *name* that resolves into them is refused,
 * so a DNS record cannot turn an allowed host into a request to the server's own side (SSRF).
 */
const INWARD = new BlockList();
for (const [network, prefix] of [["0.0.0.0", 8], ["10.0.0.0", 8], ["100.64.0.0", 10], ["127.0.0.0", 8], ["169.254.0.0", 16], ["172.16.0.0", 12], ["192.168.0.0", 16], ["198.18.0.0", 15], ["224.0.0.0", 4], ["240.0.0.0", 4]] as const) {
  INWARD.addSubnet(network, prefix, "ipv4");
}
for (const [network, prefix] of [["::", 128], ["::1", 128], ["fc00::", 7], ["fe80::", 10], ["ff00::", 8]] as const) INWARD.addSubnet(network, prefix, "ipv6");

export function isInwardAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (mapped) return INWARD.check(mapped, "ipv4");
  return INWARD.check(address, isIP(address) === 6 ? "ipv6" : "ipv4");
}

/**
 * An image from an http(s) URL whose host the operator listed (KITTY_IMAGES_FETCH_HOSTS): never by default, no
 * redirect off the list, connected to the very address that was checked (no second DNS answer), at most
 * `maxBytes` read. `field` is named in every refusal.
 */
export async function fetchImage(given: string, field: string, hosts: readonly string[], maxBytes: number): Promise<{ bytes: Buffer; url: string }> {
  if (hosts.length === 0) {
    throw new KittyError("invalid_argument", `${field}: this server fetches no URLs (set KITTY_IMAGES_FETCH_HOSTS to the hosts it may fetch from); send a data: URL instead`, field);
  }
  let url = parseUrl(given, field);
  for (let redirects = 0; ; redirects++) {
    const address = await checkedAddress(url, field, hosts);
    const answer = await get(url, address, field, maxBytes);
    if ("location" in answer) {
      if (redirects === MAX_REDIRECTS) throw new KittyError("invalid_argument", `${field}: ${given} redirects more than ${MAX_REDIRECTS} times`, field);
      url = parseUrl(new URL(answer.location, url).toString(), field);
      continue;
    }
    return { bytes: answer.bytes, url: url.toString() };
  }
}

function parseUrl(text: string, field: string): URL {
  try {
    const url = new URL(text);
    if (url.protocol === "http:" || url.protocol === "https:") return url;
  } catch {
    // refused below
  }
  throw new KittyError("invalid_argument", `${field}: '${text.slice(0, 120)}' is not an http(s) URL`, field);
}

/** The address to connect to: the host must be listed, and an inward address must be listed as an address. */
async function checkedAddress(url: URL, field: string, hosts: readonly string[]): Promise<{ address: string; family: 4 | 6 }> {
  const name = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  if (!hosts.includes(name) && !hosts.includes(url.host.toLowerCase())) {
    throw new KittyError("invalid_argument", `${field}: ${url.host} is not a host this server fetches from (KITTY_IMAGES_FETCH_HOSTS lists ${hosts.join(", ")})`, field);
  }
  const found = isIP(name) ? [{ address: name, family: isIP(name) as 4 | 6 }] : await lookup(name, { all: true }).catch(() => []);
  if (found.length === 0) throw new KittyError("invalid_argument", `${field}: ${name} does not resolve`, field);
  // Every answer must be allowed, not just the first: another client of the same name may get the next one.
  for (const { address } of found) {
    if (isInwardAddress(address) && !hosts.includes(address.toLowerCase())) {
      throw new KittyError("invalid_argument", `${field}: ${name} resolves to ${address}, a loopback or private address; list that address in KITTY_IMAGES_FETCH_HOSTS to allow it`, field);
    }
  }
  const [first] = found;
  return { address: first!.address, family: first!.family === 6 ? 6 : 4 };
}

function get(url: URL, pinned: { address: string; family: 4 | 6 }, field: string, maxBytes: number): Promise<{ bytes: Buffer } | { location: string }> {
  const pin: LookupFunction = (_host, options, done) => {
    if (options.all) done(null, [pinned]);
    else done(null, pinned.address, pinned.family);
  };
  const client = url.protocol === "https:" ? https : http;
  return new Promise((resolve, reject) => {
    const refuse = (message: string) => reject(new KittyError("invalid_argument", `${field}: ${message}`, field));
    const request = client.get(url, { lookup: pin, timeout: TIMEOUT_MS, headers: { accept: "image/png,image/jpeg,image/webp" } }, (response) => {
      const status = response.statusCode ?? 0;
      if (status >= 300 && status < 400 && response.headers.location) {
        response.resume();
        return resolve({ location: response.headers.location });
      }
      if (status !== 200) {
        response.resume();
        return refuse(`${url.host} answered ${status} for ${url.pathname}`);
      }
      const declared = Number(response.headers["content-length"] ?? 0);
      if (declared > maxBytes) {
        response.destroy();
        return refuse(`${url} is ${(declared / 1e6).toFixed(1)} MB; an image brought in is at most ${maxBytes / 1e6} MB`);
      }
      const chunks: Buffer[] = [];
      let size = 0;
      response.on("data", (chunk: Buffer) => {
        size += chunk.length;
        if (size > maxBytes) {
          response.destroy();
          refuse(`${url} is over ${maxBytes / 1e6} MB; an image brought in is at most ${maxBytes / 1e6} MB`);
          return;
        }
        chunks.push(chunk);
      });
      response.on("end", () => resolve({ bytes: Buffer.concat(chunks, size) }));
      response.on("error", (error) => refuse(`reading ${url} failed: ${error.message}`));
    });
    request.on("timeout", () => request.destroy(new Error(`no answer in ${TIMEOUT_MS / 1000} s`)));
    request.on("error", (error) => refuse(`could not fetch ${url}: ${error.message}`));
  });
}
