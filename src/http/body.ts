import type { IncomingMessage, ServerResponse } from "node:http";

/** Request bodies larger than this are refused with 413 before they are read further. */
import { MAX_MESSAGE_BYTES } from "../core/limits.js";

/** A request body over this is refused with 413, as a stdio line over it is with an error. */
export const MAX_BODY_BYTES = MAX_MESSAGE_BYTES;

export class BodyTooLarge extends Error {}
export class BodyNotJson extends Error {}

/** Reads a body as text, at most `maxBytes` of it. */
async function readBodyText(request: IncomingMessage, maxBytes: number): Promise<string> {
  const declared = Number(request.headers["content-length"] ?? 0);
  if (declared > maxBytes) throw new BodyTooLarge(`the request body is ${declared} bytes; at most ${maxBytes} are accepted`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new BodyTooLarge(`the request body is over ${maxBytes} bytes, the most accepted`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks).toString("utf8").trim();
}

/** Reads an HTML form's body (application/x-www-form-urlencoded). */
export async function readFormBody(request: IncomingMessage, maxBytes = 64 * 1024): Promise<URLSearchParams> {
  return new URLSearchParams(await readBodyText(request, maxBytes));
}

/** Reads a JSON body, at most `maxBytes` of it; an empty body reads as `{}`. */
export async function readJsonBody(request: IncomingMessage, maxBytes = MAX_BODY_BYTES): Promise<unknown> {
  const text = await readBodyText(request, maxBytes);
  if (text === "") return {};
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new BodyNotJson(`the request body is not JSON: ${(error as Error).message}`);
  }
}

export function sendHtml(response: ServerResponse, status: number, page: string, headers: Record<string, string> = {}): void {
  response.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "content-length": String(Buffer.byteLength(page)),
    "cache-control": "no-store",
    // Inline script and styles nowhere: only our own files, and images from wherever imageRefs point (S3 presigned).
    "content-security-policy": "default-src 'self'; img-src 'self' data: http: https: file:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    ...headers,
  });
  response.end(page);
}

export function redirect(response: ServerResponse, location: string, headers: Record<string, string> = {}): void {
  response.writeHead(303, { location, "cache-control": "no-store", ...headers });
  response.end();
}

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { "content-type": "application/json; charset=utf-8", "content-length": String(Buffer.byteLength(text)), "x-content-type-options": "nosniff", ...headers });
  response.end(text);
}

/**
 * A listing's `limit` query parameter (default 36, 1-200), or null once a 422 naming it has been sent, in the
 * shape FastAPI gives (the images-service's REST API).
 */
export function queryLimit(url: URL, response: ServerResponse): number | null {
  const raw = url.searchParams.get("limit") ?? "36";
  const limit = Number(raw);
  if (Number.isInteger(limit) && limit >= 1 && limit <= 200) return limit;
  sendJson(response, 422, { detail: [{ loc: ["query", "limit"], msg: `limit must be an integer between 1 and 200 (got ${JSON.stringify(raw)})`, type: "value_error" }] });
  return null;
}

/** A percent-encoded path, or null when its encoding is broken (`%ZZ`). */
export function decodePath(encoded: string): string | null {
  try {
    return encoded.split("/").map(decodeURIComponent).join("/");
  } catch {
    return null;
  }
}
