// The images-service's REST API in one file: every route shares the translation of the old service's fields into
// the tools' arguments and of the tools' refusals into FastAPI's 422 shape, which split apart each would need.
import type { IncomingMessage, ServerResponse } from "node:http";
import { z } from "zod";
import { KittyError } from "../core/errors.js";
import type { ModelCatalog } from "../models/catalog.js";
import { catalogWithEngineModels } from "../models/engineCatalog.js";
import type { App } from "../mcp/app.js";
import { toolDeps } from "../mcp/createMcpServer.js";
import { generateImage } from "../mcp/tools/generateImage.js";
import { orientedSize, SIZE_WORDS, type SizeWord } from "../models/imageSizes.js";
import { defaultSizeOf } from "../models/resolveRequest.js";
import { selectImage } from "../mcp/tools/selectImage.js";
import { upscaleImage } from "../mcp/tools/upscaleImage.js";
import { invokeTool } from "../mcp/tools/toolKit.js";
import type { Job } from "../queue/job.js";
import { sidecarKey } from "../storage/imageStore.js";
import { BodyNotJson, BodyTooLarge, decodePath, queryLimit, readJsonBody, sendJson } from "./body.js";
import { listUploads } from "./uploadList.js";

/**
 * The images-service REST API as KITTY's gateway and kitty-cli call it today: the same paths, fields and status
 * words, so they work unchanged against this server. Generating and selecting call the MCP tools themselves
 * (generate_image, select_image) through invokeTool, as the gallery does: this file only translates the old
 * service's request into the tool's arguments, and the tool's answer or refusal into the old service's shapes.
 */

type Problem = { field: string | null; message: string; type: string };

/** REST's body fields, in the order a 422 lists their problems (the order the old service's model declared them). */
const REST_FIELDS = ["prompt", "size", "width", "height", "steps", "cfg", "seed", "model", "refiner", "style", "init_image", "strength", "mask", "mask_blur", "outpaint"] as const;
/** generate_image's argument names where REST's differ. */
const REST_NAME_OF: Record<string, string> = { cfg_scale: "cfg" };
/**
 * REST fields handed to generate_image as they are (its rules check them); cfg, seed, model and refiner are
 * translated. The images (init_image, mask) are what generate_image takes over HTTP: a stored key or imageRef, a
 * data: URL, or a URL from a listed host; never a path on the server's disk.
 */
const PASSED_AS_IS = ["prompt", "width", "height", "steps", "style", "init_image", "strength", "mask", "mask_blur", "outpaint"] as const;

/**
 * What only REST has, checked here: the body is an object (FastAPI's defaults: unknown fields are ignored, as the
 * original service did), model's message points at models.yaml, and refiner may be the refiner's model name.
 * Everything else is checked by generate_image's own argument rules.
 */
const restOnly = z.object({
  model: z.string({ error: "model must be a string: a name from models.yaml" }).optional(),
  // The deployed service took the refiner's model name; a boolean means the same here.
  refiner: z.union([z.string(), z.boolean(), z.null()], { error: "refiner must be a refiner model name or true/false" }).optional(),
  // KITTY's UI voice tool says the shape, not the pixels: the model's family turns it into a size (orientedSize).
  size: z.enum(SIZE_WORDS, { error: `size must be one of ${SIZE_WORDS.join(", ")} (or leave it out and give width and height)` }).optional(),
});

/** The same rules invokeTool applies, read issue by issue so each 422 entry names its field. */
const generateArguments = z.object(generateImage.input);
const upscaleArguments = z.object(upscaleImage.input);

/** A field (and the message that starts with its name) in REST's words: cfg_scale is cfg here. */
function inRestWords({ field, message, type }: Problem): Problem {
  const restName = field === null ? undefined : REST_NAME_OF[field];
  if (!restName) return { field, message, type };
  return { field: restName, message: message.startsWith(`${field} `) ? `${restName}${message.slice(field!.length)}` : message, type };
}

function problemsOf(error: z.ZodError): Problem[] {
  return error.issues.map((issue) => ({ field: issue.path.map(String).join(".") || null, message: issue.message, type: issue.code }));
}

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
function unprocessable(response: ServerResponse, problems: Problem[]): void {
  sendJson(response, 422, { detail: problems.map(({ field, message, type }) => ({ loc: field ? ["body", field] : ["body"], msg: message, type })) });
}

/** Problems in the order of REST's fields, as one schema over REST's body listed them; a problem with the whole body first. */
function inFieldOrder(problems: Problem[]): Problem[] {
  const rank = (field: string | null) => (field === null ? -1 : (REST_FIELDS as readonly string[]).indexOf(field.split(".")[0]!));
  return [...problems].sort((a, b) => rank(a.field) - rank(b.field));
}

/**
 * The deployed service took a refiner *model name*; a boolean means the same here, and generate_image takes only
 * the boolean. A name must be the refiner models.yaml gives the model (as an entry's name), so a typo is an error
 * rather than a silent other refiner.
 */
async function refinerWanted(refiner: string | boolean | null | undefined, model: string | undefined, catalogOf: () => Promise<ModelCatalog>): Promise<boolean | undefined> {
  if (refiner === undefined || refiner === null) return undefined;
  if (typeof refiner === "boolean") return refiner;
  const name = refiner.trim();
  if (name === "" || name.toLowerCase() === "false") return false;
  if (name.toLowerCase() === "true") return true;
  const catalog = await catalogOf();
  const modelName = model ?? catalog.defaultModel;
  if (!modelName) return true;
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

/** The width and height a size word means for the model asked (or the default), refused beside width or height. */
async function sizeOfWord(word: SizeWord, model: string | undefined, args: Record<string, unknown>, catalogOf: () => Promise<ModelCatalog>): Promise<{ width?: number; height?: number }> {
  if (args.width !== undefined || args.height !== undefined) throw new KittyError("invalid_argument", "size says the shape and width/height the pixels: give one or the other", "size");
  const catalog = await catalogOf();
  const name = model ?? catalog.defaultModel;
  let entry;
  try {
    entry = name ? catalog.get(name) : null;
  } catch {
    entry = null;
  }
  // A model that is not there: generate_image refuses it, naming the field.
  if (!entry) return {};
  const { width, height, multipleOf } = defaultSizeOf(entry);
  return orientedSize(word, { width, height }, multipleOf);
}

/** POST /api/images/generate: the body as generate_image's arguments, queued by the tool. */
async function generate(app: App, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const body = await readJsonBody(request);
  const own = restOnly.safeParse(body);
  // Not an object: nothing in it to hand on.
  if (!own.success && own.error.issues.some((issue) => issue.path.length === 0)) return unprocessable(response, problemsOf(own.error));
  const fields = body as Record<string, unknown>;
  const given = (name: string) => Object.hasOwn(fields, name);
  const args: Record<string, unknown> = {};
  for (const name of PASSED_AS_IS) if (given(name)) args[name] = fields[name];
  if (given("cfg")) args.cfg_scale = fields.cfg;
  // The old service's seed: null meant a random one, as leaving it out does.
  if (given("seed") && fields.seed !== null) args.seed = fields.seed;
  if (typeof fields.model === "string") args.model = fields.model;
  const checked = generateArguments.safeParse(args);
  const problems = [...(own.success ? [] : problemsOf(own.error)), ...(checked.success ? [] : problemsOf(checked.error).map(inRestWords))];
  if (problems.length > 0) return unprocessable(response, inFieldOrder(problems));
  const deps = toolDeps(app, "http");
  try {
    // The catalog generate_image will resolve against (under another engine the default may be one of its models),
    // asked at most once, and only when the refiner's name or a size word needs it.
    let asked: Promise<ModelCatalog> | undefined;
    const catalogOf = () => (asked ??= catalogWithEngineModels(deps.config.models, deps.config.engine, deps.engineModels, { model: own.data!.model }));
    const refiner = await refinerWanted(own.data!.refiner, own.data!.model, catalogOf);
    if (refiner !== undefined) args.refiner = refiner;
    if (own.data!.size) Object.assign(args, await sizeOfWord(own.data!.size, own.data!.model, args, catalogOf));
    const { structured } = await invokeTool(generateImage, args, deps);
    sendJson(response, 200, { job_id: structured.jobId, status: "queued" });
  } catch (error) {
    if (!(error instanceof KittyError)) throw error;
    unprocessable(response, [inRestWords({ field: error.field ?? null, message: error.message, type: error.code })]);
  }
}

/** POST /api/images/upscale (ours; the images-service had none): upscale_image's arguments, queued as generate's are. */
async function upscale(app: App, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const body = await readJsonBody(request);
  const checked = upscaleArguments.safeParse(body);
  if (!checked.success) return unprocessable(response, problemsOf(checked.error));
  try {
    const { structured } = await invokeTool(upscaleImage, checked.data, toolDeps(app, "http"));
    sendJson(response, 200, { job_id: structured.jobId, status: "queued" });
  } catch (error) {
    if (!(error instanceof KittyError)) throw error;
    if (error.code === "not_found") return sendJson(response, 404, { detail: error.message });
    unprocessable(response, [{ field: error.field ?? null, message: error.message, type: error.code }]);
  }
}

/** POST /api/images/select: select_image by key, its imageRef with the key in it. */
async function select(app: App, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const body = (await readJsonBody(request)) as { key?: unknown };
  // An empty key is checked like any other, so its 422 says what a key may be.
  if (typeof body?.key !== "string") {
    return unprocessable(response, [{ field: "key", message: "key is required: an image key from /api/images/latest", type: "missing" }]);
  }
  const key = body.key;
  try {
    const { structured } = await invokeTool(selectImage, { key }, toolDeps(app, "http"));
    const { downloadUrl, storageUri } = structured.imageRef;
    sendJson(response, 200, { imageRef: { downloadUrl, storageUri, key } });
  } catch (error) {
    if (!(error instanceof KittyError)) throw error;
    // The old service's words for a key it does not have; a key that is not one is the key's 422.
    if (error.code === "not_found") return sendJson(response, 404, { detail: `no image with key '${key}'` });
    if (error.code !== "invalid_argument") throw error;
    unprocessable(response, [{ field: "key", message: error.message, type: "value_error" }]);
  }
}

/**
 * GET /api/images/latest. Read from the index itself, not through list_latest_images: each item's `size` is the
 * PNG's bytes, which the tool's listing does not carry.
 */
async function latest(app: App, url: URL, response: ServerResponse): Promise<void> {
  const limit = queryLimit(url, response);
  if (limit === null) return;
  const items = (await app.index.latest(limit)).images.map((image) => ({
    key: image.key,
    size: typeof image.metadata.pngBytes === "number" ? image.metadata.pngBytes : 0,
    last_modified: image.createdAt,
  }));
  sendJson(response, 200, { items });
}

const REST_POSTS = new Set(["POST /api/images/generate", "POST /api/images/upscale", "POST /api/images/select"]);

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
    } else if (route === "POST /api/images/upscale") {
      await upscale(app, request, response);
    } else if (route.startsWith("GET /api/images/jobs/")) {
      const jobId = decodePath(url.pathname.slice("/api/images/jobs/".length)) ?? "";
      const job = await app.queue.find(jobId);
      if (!job) sendJson(response, 404, { detail: `no job with id '${jobId}'` });
      else sendJson(response, 200, rqStatus(job, job.state === "done" ? (await app.index.ofJob(job.id))[0]?.key : undefined));
    } else if (route === "GET /api/images/latest") {
      await latest(app, url, response);
    } else if (route === "GET /api/images/uploads") {
      await listUploads(app, url, response);
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
