import type { IncomingMessage } from "node:http";

/** A stand-in's request body as JSON ({} when empty). */
export async function readJson(request: IncomingMessage): Promise<Record<string, any>> {
  const chunks: Buffer[] = [];
  for await (const chunk of request) chunks.push(chunk as Buffer);
  const text = Buffer.concat(chunks).toString("utf8");
  return text ? (JSON.parse(text) as Record<string, any>) : {};
}
