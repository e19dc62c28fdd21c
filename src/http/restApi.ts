import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import { boundedInt, boundedNumber, boundedText } from "../core/arguments.js";
import { KittyError } from "../core/errors.js";
import { LIMITS } from "../core/generation.js";
import type { ModelCatalog } from "../models/catalog.js";
import { catalogWithEngineModels } from "../models/engineCatalog.js";
import { modelsOfWorkers, resolveRequest } from "../models/resolveRequest.js";
import type { Job } from "../queue/job.js";
import type { App } from "../mcp/app.js";
import { toolDeps } from "../mcp/createMcpServer.js";
import { checkImageKey } from "../storage/imageKeys.js";
import { sidecarKey } from "../storage/imageStore.js";
import { BodyNotJson, BodyTooLarge, decodePath, readJsonBody, sendJson } from "./body.js";

/**
 * The images-service REST API as KITTY's gateway and kitty-cli call it today: the same paths, fields and status
 * words, so they work unchanged against this server. Requests go through the same queue, catalog and links as
 * the MCP tools.
 */

const { size, steps, cfgScale, seed, promptChars } = LIMITS;

/** FastAPI's defaults: unknown fields are ignored, as the original service did. */
const generateBody = z.object({
  prompt: boundedText("prompt", promptChars, { required: true }),
  width: boundedInt("width", size.min, size.max, undefined, size.multipleOf).optional(),
  height: boundedInt("height", size.min, size.max, undefined, size.multipleOf).optional(),
  steps: boundedInt("steps", steps.min, steps.max).optional(),
  cfg: boundedNumber("cfg", cfgScale.min, cfgScale.max).optional(),
  seed: boundedInt("seed", seed.min, seed.max).nullable().optional(),
  model: z.string({ error: "model must be a string: a name from models.yaml" }).optional(),
  // The deployed service took the refiner's model name; a boolean means the same here.
  refiner: z.union([z.string(), z.boolean(), z.null()], { error: "refiner must be a refiner model name or true/false" }).optional(),
});

/** RQ's words, which kitty-cli polls for: it stops only at "finished" or "failed". */
function rqStatus(job: Job, pngKey: string | undefined) {
  switch (job.state) {
    case "queued":
      return { status: "queued", result: null, error: null };
    case "running":
      return { status: "started", result: null, error: null };
    case "done":
      return { status: "finished", result: pngKey ? { png_key: pngKey, meta_key: sidecarKey(pngKey) } : null, error: null };
    case "failed":
      return { status: "failed", result: null, error: `${job.error?.code ?? "failed"}: ${job.error?.message ?? "no reason recorded"}` };
    case "cancelled":
      return { status: "failed", result: null, error: "cancelled: the job was cancelled before it made an image" };
  }
}

/** FastAPI's 422 shape, one entry per problem, each naming its field. */
function unprocessable(response: ServerResponse, problems: Array<{ field: string | null; message: string; type: string }>): void {
  sendJson(response, 422, { detail: problems.map(({ field, message, type }) => ({ loc: field ? ["body", field] : ["body"], msg: message, type })) });
}

/**
 * The deployed service took a refiner *model name*; a boolean means the same here. A name must be the refiner
 * models.yaml gives the model (as an entry's name), so a typo is an error rather than a silent other refiner.
 */
function refinerWanted(refiner: string | boolean | null | undefined, modelName: string | null, catalog: ModelCatalog): boolean | undefined {
  if (refiner === undefined || refiner === null) return undefined;
  if (typeof refiner === "boolean") return refiner;
  const name = refiner.trim();
  if (name === "" || name.toLowerCase() === "false") return false;
  if (name.toLowerCase() === "true" || !modelName) return true;
  const named = catalog.entries.find((entry) => entry.name === name);
  const configured = catalog.entries.find((entry) => entry.name === modelName)?.refinerPath ?? null;
  if (named && configured && named.path === configured) return true;
  throw new KittyError(
    "invalid_argument",
    configured
      ? `refiner '${name}' is not the refiner models.yaml gives model '${modelName}'; send true, or the name of its refiner entry`
      : `model '${modelName}' has no refiner in models.yaml (asked for '${name}')`,
    "refiner",
  );
}

async function generate(app: App, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const parsed = generateBody.safeParse(await readJsonBody(request));
  if (!parsed.success) {
    return unprocessable(
      response,
      parsed.error.issues.map((issue) => ({ field: issue.path.map(String).join(".") || null, message: issue.message, type: issue.code })),
    );
  }
  const { prompt, width, height, steps: stepCount, cfg, seed: seedValue, model, refiner } = parsed.data;
  try {
    const catalog = await catalogWithEngineModels(app.config.models, app.config.engine, toolDeps(app).engineModels, { model });
    const resolved = resolveRequest(
      { prompt, width, height, steps: stepCount, cfgScale: cfg, seed: seedValue ?? undefined, model, refiner: refinerWanted(refiner, model ?? catalog.defaultModel, catalog) },
      catalog,
      undefined,
      app.workers ? modelsOfWorkers(await app.workers()) : undefined,
    );
    const { job } = await app.queue.enqueue(resolved);
    sendJson(response, 200, { job_id: job.id, status: "queued" });
  } catch (error) {
    if (!(error instanceof KittyError)) throw error;
    unprocessable(response, [{ field: error.field ?? null, message: error.message, type: error.code }]);
  }
}

async function select(app: App, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const body = (await readJsonBody(request)) as { key?: unknown };
  // An empty key is checked like any other, so its 422 says what a key may be.
  if (typeof body?.key !== "string") {
    return unprocessable(response, [{ field: "key", message: "key is required: an image key from /api/images/latest", type: "missing" }]);
  }
  try {
    checkImageKey(body.key, app.config.keyPrefix);
  } catch (error) {
    return unprocessable(response, [{ field: "key", message: (error as Error).message, type: "value_error" }]);
  }
  if (!(await app.index.byKey(body.key))) return sendJson(response, 404, { detail: `no image with key '${body.key}'` });
  const { downloadUrl, storageUri } = await app.links.imageRef(body.key);
  sendJson(response, 200, { imageRef: { downloadUrl, storageUri, key: body.key } });
}

async function latest(app: App, url: URL, response: ServerResponse): Promise<void> {
  const raw = url.searchParams.get("limit") ?? "36";
  const limit = Number(raw);
  if (!Number.isInteger(limit) || limit < 1 || limit > 200) {
    return sendJson(response, 422, { detail: [{ loc: ["query", "limit"], msg: `limit must be an integer between 1 and 200 (got ${JSON.stringify(raw)})`, type: "value_error" }] });
  }
  const items = (await app.index.latest(limit)).images.map((image) => ({
    key: image.key,
    size: typeof image.metadata.pngBytes === "number" ? image.metadata.pngBytes : 0,
    last_modified: image.createdAt,
  }));
  sendJson(response, 200, { items });
}

const REST_POSTS = new Set(["POST /api/images/generate", "POST /api/images/select"]);

function isJsonBody(request: IncomingMessage): boolean {
  const type = request.headers["content-type"]?.split(";")[0]?.trim().toLowerCase();
  return type === "application/json" || (type !== undefined && /^application\/[\w.+-]+\+json$/.test(type));
}

/** The images-service REST API; answers false when the path is not one of its routes. */
export async function handleRest(app: App, request: IncomingMessage, response: ServerResponse, url: URL): Promise<boolean> {
  const route = `${request.method} ${url.pathname.replace(/\/+$/, "") || "/"}`;
  // A page on another site may POST text/plain here without asking first (no CORS preflight); JSON it cannot send so.
  if (request.method === "POST" && REST_POSTS.has(route) && !isJsonBody(request)) {
    sendJson(response, 415, { detail: `send the body as JSON with 'Content-Type: application/json' (got ${JSON.stringify(request.headers["content-type"] ?? "no Content-Type")})` }, { connection: "close" });
    return true;
  }
  try {
    if (route === "GET /") {
      sendJson(response, 200, { service: "kitty-images", status: "online", engine: app.config.engine, queue_name: "images" });
    } else if (route === "POST /api/images/generate") {
      await generate(app, request, response);
    } else if (route.startsWith("GET /api/images/jobs/")) {
      const jobId = decodePath(url.pathname.slice("/api/images/jobs/".length)) ?? "";
      const job = await app.queue.find(jobId);
      if (!job) sendJson(response, 404, { detail: `no job with id '${jobId}'` });
      else sendJson(response, 200, rqStatus(job, job.state === "done" ? (await app.index.ofJob(job.id))[0]?.key : undefined));
    } else if (route === "GET /api/images/latest") {
      await latest(app, url, response);
    } else if (route === "POST /api/images/select") {
      await select(app, request, response);
    } else if (route === "GET /api/images/stats") {
      const counts = await app.queue.counts();
      sendJson(response, 200, { queued: counts.queued, started: counts.running, finished: counts.done, failed: counts.failed + counts.cancelled });
    } else {
      return false;
    }
  } catch (error) {
    // The rest of the body is not read: close the connection rather than leave it half-consumed.
    if (error instanceof BodyTooLarge) sendJson(response, 413, { detail: error.message }, { connection: "close" });
    else if (error instanceof BodyNotJson) unprocessable(response, [{ field: null, message: error.message, type: "json_invalid" }]);
    else throw error;
  }
  return true;
}
