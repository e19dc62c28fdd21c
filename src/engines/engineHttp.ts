import { mkdir, rename, writeFile } from "node:fs/promises";
import path from "node:path";
import type { GenerationRequest } from "../core/generation.js";
import { pngFileSize } from "../images/pngInfo.js";
import { EngineJobError } from "./engine.js";
import { seconds } from "./seconds.js";

/**
 * Calls to another app's HTTP API (AUTOMATIC1111, ComfyUI) with a deadline each; every failure is an
 * EngineJobError that names the engine, its URL and what came back: engine_unreachable when nothing answered in
 * time or at all, engine_failed when something did, but not what was asked for.
 */
export class EngineHttp {
  /** The last failure to reach the engine (cleared by a success): /healthz and list_models show it. */
  lastError: string | null = null;

  constructor(
    /** "AUTOMATIC1111 at http://…": how messages name the engine. */
    readonly where: string,
    readonly baseUrl: string,
    private readonly auth: string | null,
    private readonly unreachableHint: string,
  ) {}

  async json(method: "GET" | "POST" | "PUT", route: string, body: unknown, timeoutMs: number): Promise<unknown> {
    const text = (await this.request(method, route, body, timeoutMs, { accept: "application/json" })).toString("utf8");
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw new EngineJobError("engine_failed", `${this.where} answered ${method} ${route} with something other than JSON: ${text.slice(0, 200)}`);
    }
  }

  /** A call whose answer carries nothing to read: ComfyUI answers /interrupt and /queue with an empty 200. */
  async send(method: "POST" | "PUT", route: string, body: unknown, timeoutMs: number): Promise<void> {
    await this.request(method, route, body, timeoutMs, {});
  }

  bytes(route: string, timeoutMs: number): Promise<Buffer> {
    return this.request("GET", route, undefined, timeoutMs, {});
  }

  nonsense(route: string, expected: string, answer: unknown): EngineJobError {
    const shown = JSON.stringify(answer)?.slice(0, 200) ?? String(answer);
    return new EngineJobError("engine_failed", `${this.where} answered ${route} with something other than ${expected}: ${shown}`);
  }

  private async request(method: "GET" | "POST" | "PUT", route: string, body: unknown, timeoutMs: number, headers: Record<string, string>): Promise<Buffer> {
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.auth) headers.authorization = `Basic ${Buffer.from(this.auth).toString("base64")}`;
    let response: Response;
    try {
      response = await fetch(`${this.baseUrl}${route}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(Math.ceil(timeoutMs)),
      });
    } catch (error) {
      const cause = error as Error & { cause?: { code?: string } };
      const message =
        cause.name === "TimeoutError"
          ? `${this.where} did not answer ${method} ${route} within ${seconds(timeoutMs)} s`
          : `${this.where} could not be reached (${cause.cause?.code ?? cause.message}); ${this.unreachableHint}`;
      this.lastError = message;
      throw new EngineJobError("engine_unreachable", message);
    }
    const bytes = Buffer.from(await response.arrayBuffer());
    this.lastError = null;
    if (!response.ok) {
      const hint = response.status === 401 ? " (check the user:password this server sends)" : "";
      throw new EngineJobError("engine_failed", `${this.where} answered ${method} ${route} with HTTP ${response.status}${hint}: ${bytes.toString("utf8").slice(0, 300)}`);
    }
    return bytes;
  }
}

/** Writes an engine's PNG into staging, whole, once it is a PNG of the asked size: nothing wrong is ever stored. */
export async function stagePng(bytes: Buffer, target: string, request: GenerationRequest, where: string): Promise<void> {
  await mkdir(path.dirname(target), { recursive: true });
  await writeFile(`${target}.partial`, bytes);
  const size = await pngFileSize(`${target}.partial`).catch(() => null);
  if (!size) throw new EngineJobError("bad_output", `${where} sent an image that is not a PNG (${bytes.length} bytes); nothing was stored`);
  if (size.width !== request.width || size.height !== request.height) {
    throw new EngineJobError("bad_output", `${where} made a ${size.width}x${size.height} image, not the ${request.width}x${request.height} asked for; nothing was stored`);
  }
  await rename(`${target}.partial`, target);
}
