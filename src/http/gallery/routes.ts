import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import path from "node:path";
import { PROJECT_ROOT } from "../../config.js";
import { KittyError, messageOf } from "../../core/errors.js";
import { formToken, isFormToken, type AccessPolicy } from "../accessGuard.js";
import { decodePath, redirect, sendHtml, sendJson } from "../body.js";
import type { App } from "../../mcp/app.js";
import { toolDeps } from "../../mcp/createMcpServer.js";
import { checkImageKey } from "../../storage/imageKeys.js";
import { generateImage } from "../../mcp/tools/generateImage.js";
import { storedPreview } from "../../mcp/tools/previewImages.js";
import { selectImage } from "../../mcp/tools/selectImage.js";
import { invokeTool } from "../../mcp/tools/toolKit.js";
import { html } from "./html.js";
import { readGalleryForm } from "./login.js";
import { detailPage, galleryPage, jobStrip, messagePage, regenerateForm, type RegenerateDefaults } from "./pages.js";

/**
 * /gallery: what was made, newest first, in a browser. Server-rendered pages; web/gallery.js adds the live job
 * strip (server-sent events), Select (the same select_image a model calls) and copying. Behind the door's access
 * guard like the API; a browser logs in once (?token= or the form) and then carries a cookie.
 */

const PAGE_SIZE = 24;
const MAX_PAGE_SIZE = 100;
const STRIP_QUEUED = 8;
const EVENTS_POLL_MS = 400;
const EVENTS_KEEPALIVE_MS = 15_000;
const WEB_DIR = path.join(PROJECT_ROOT, "web");
const STATIC_FILES: Record<string, string> = { "gallery.js": "text/javascript; charset=utf-8", "gallery.css": "text/css; charset=utf-8" };

/** The gallery's routes, for a request the access guard let through; false when the path is not the gallery's. */
export async function handleGallery(app: App, policy: AccessPolicy, request: IncomingMessage, response: ServerResponse, url: URL): Promise<boolean> {
  const { pathname } = url;
  if (pathname !== "/gallery" && !pathname.startsWith("/gallery/")) return false;
  const route = `${request.method} ${pathname.replace(/^(\/gallery\/(?:image|preview|static))\/.*$/, "$1/*")}`;
  switch (route) {
    case "GET /gallery":
    case "GET /gallery/":
      await showGallery(app, response, url);
      return true;
    case "GET /gallery/image/*":
      await showImage(app, response, pathname.slice("/gallery/image/".length), formToken(policy));
      return true;
    case "GET /gallery/preview/*":
      await sendPreview(app, response, pathname.slice("/gallery/preview/".length));
      return true;
    case "GET /gallery/select":
      await select(app, response, url.searchParams.get("key") ?? "");
      return true;
    case "POST /gallery/generate":
      await regenerate(app, policy, request, response);
      return true;
    case "GET /gallery/events":
      streamEvents(app, request, response);
      return true;
    case "GET /gallery/static/*":
      await sendStatic(response, pathname.slice("/gallery/static/".length));
      return true;
    default:
      sendHtml(response, 404, messagePage("Not found", html`<p>No gallery page at ${pathname}. <a href="/gallery">Back to the gallery</a></p>`));
      return true;
  }
}

async function showGallery(app: App, response: ServerResponse, url: URL): Promise<void> {
  const cursor = url.searchParams.get("cursor") ?? undefined;
  const asked = Number(url.searchParams.get("per_page") ?? PAGE_SIZE);
  const perPage = Number.isInteger(asked) ? Math.min(Math.max(asked, 1), MAX_PAGE_SIZE) : PAGE_SIZE;
  let page;
  try {
    page = await app.index.latest(perPage, cursor);
  } catch (error) {
    if (!(error instanceof KittyError)) throw error;
    return sendHtml(response, 400, messagePage("Bad page", html`<p>${error.message}</p><p><a href="/gallery">Newest images</a></p>`));
  }
  const [jobs, total, newest] = await Promise.all([app.queue.active(STRIP_QUEUED), app.index.count(), app.index.latest(1)]);
  sendHtml(
    response,
    200,
    galleryPage({
      images: page.images,
      nextCursor: page.nextCursor,
      perPage: perPage === PAGE_SIZE ? null : perPage,
      paged: cursor !== undefined,
      jobs,
      total,
      newestKey: newest.images[0]?.key ?? null,
    }),
  );
}

/** The key in a gallery path, checked like every door checks keys; null (and a 404 sent) when it is not one. */
function keyFrom(app: App, response: ServerResponse, encoded: string): string | null {
  const key = decodePath(encoded);
  try {
    if (key === null) throw new KittyError("invalid_argument", "the address is not a percent-encoded image key");
    checkImageKey(key, app.config.keyPrefix);
    return key;
  } catch (error) {
    sendHtml(response, 404, messagePage("No such image", html`<p>${messageOf(error)}</p><p><a href="/gallery">Back to the gallery</a></p>`));
    return null;
  }
}

async function showImage(app: App, response: ServerResponse, encoded: string, form: string): Promise<void> {
  const key = keyFrom(app, response, encoded);
  if (key === null) return;
  const record = await app.index.byKey(key);
  if (!record) return sendHtml(response, 404, messagePage("No such image", html`<p>No image ${key} here. <a href="/gallery">Back to the gallery</a></p>`));
  const { downloadUrl, storageUri } = await app.links.imageRef(key);
  sendHtml(response, 200, detailPage(record, { downloadUrl, storageUri }, app.config.models.names(), form));
}

/** The stored WebP preview; an image made without one is sent as its full PNG link instead. */
async function sendPreview(app: App, response: ServerResponse, encoded: string): Promise<void> {
  const key = decodePath(encoded);
  const record = key === null ? undefined : await app.index.byKey(key);
  if (!record) return sendJson(response, 404, { detail: `no image ${key ?? encoded} in the index` });
  const preview = storedPreview(record);
  if (!preview) return redirect(response, (await app.links.imageRef(record.key)).downloadUrl);
  let bytes: Buffer;
  try {
    bytes = await app.store.readImage(preview.key);
  } catch (error) {
    app.log.warn({ key: preview.key, error: messageOf(error) }, "gallery: could not read a preview");
    return sendJson(response, 503, { detail: "storage did not answer for this preview; reload in a moment" });
  }
  // A key is never rewritten with other pixels: the browser may keep it.
  response.writeHead(200, { "content-type": preview.mimeType, "content-length": String(bytes.length), "cache-control": "private, max-age=31536000, immutable" });
  response.end(bytes);
}

/** Select: exactly what select_image answers, through the same tool. */
async function select(app: App, response: ServerResponse, key: string): Promise<void> {
  try {
    const { structured } = await invokeTool(selectImage, { key }, toolDeps(app, "http"));
    sendJson(response, 200, structured);
  } catch (error) {
    if (!(error instanceof KittyError)) throw error;
    sendJson(response, error.code === "not_found" ? 404 : 400, { error: error.code, detail: error.message });
  }
}

const FORM_NUMBERS = ["width", "height", "steps", "cfg_scale", "seed"] as const;
const FORM_TEXTS = ["prompt", "negative_prompt", "model", "scheduler"] as const;

/** "Generate again": the form's fields as generate_image arguments, queued through the tool. */
async function regenerate(app: App, policy: AccessPolicy, request: IncomingMessage, response: ServerResponse): Promise<void> {
  const form = await readGalleryForm(request, response);
  if (!form) return;
  // Only a form this gallery served may queue: another site's page can post here with the cookie, but cannot read the token.
  if (!isFormToken(form.get("form_token"), policy)) {
    app.log.warn({ path: "/gallery/generate" }, "gallery form refused: no form token, or a stale one");
    return sendHtml(response, 403, messagePage("Not queued", html`<p>This form did not come from this gallery, or it is from before the server restarted or its token changed. <a href="/gallery">Reload the gallery</a> and send it again.</p>`));
  }
  const args: Record<string, unknown> = {};
  for (const name of FORM_TEXTS) {
    const value = form.get(name)?.trim();
    if (value) args[name] = value;
  }
  for (const name of FORM_NUMBERS) {
    const value = form.get(name)?.trim();
    // A field left empty takes the model's default; anything else must be a number, which the tool's rules check.
    if (value) args[name] = Number.isNaN(Number(value)) ? value : Number(value);
  }
  try {
    const { structured } = await invokeTool(generateImage, args, toolDeps(app, "http"));
    redirect(response, `/gallery?queued=${encodeURIComponent(structured.jobId)}`);
  } catch (error) {
    if (!(error instanceof KittyError)) throw error;
    const values = { ...args, prompt: String(args.prompt ?? "") } as unknown as RegenerateDefaults;
    sendHtml(response, 400, messagePage("Not queued", html`<p><a href="/gallery">← Gallery</a></p>${regenerateForm(values, app.config.models.names(), formToken(policy), error.message)}`));
  }
}

/**
 * Server-sent events for the job strip: the strip's HTML whenever a job moves (progress is read from the
 * database, so jobs another process runs show too), and the newest image's key so the page can offer new ones.
 */
function streamEvents(app: App, request: IncomingMessage, response: ServerResponse): void {
  response.writeHead(200, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-store", connection: "keep-alive", "x-accel-buffering": "no" });
  let last = "";
  let quietSince = Date.now();
  let closed = false;
  const send = async () => {
    const [jobs, newest] = await Promise.all([app.queue.active(STRIP_QUEUED), app.index.latest(1)]);
    if (closed) return;
    const event = JSON.stringify({ strip: jobStrip(jobs).text, newest: newest.images[0]?.key ?? null });
    if (event !== last) {
      last = event;
      quietSince = Date.now();
      response.write(`event: jobs\ndata: ${event}\n\n`);
    } else if (Date.now() - quietSince > EVENTS_KEEPALIVE_MS) {
      // A comment line keeps proxies from closing an idle stream.
      quietSince = Date.now();
      response.write(": keepalive\n\n");
    }
  };
  // One read at a time: a database slower than the tick (Postgres restarting) skips ticks rather than piling them up.
  let reading: Promise<void> | null = null;
  const tick = () => {
    reading ??= send()
      .catch((error: unknown) => app.log.warn({ error: messageOf(error) }, "gallery events: could not read the queue"))
      .finally(() => (reading = null));
  };
  response.write("retry: 2000\n\n");
  tick();
  const timer = setInterval(tick, EVENTS_POLL_MS);
  request.on("close", () => {
    closed = true;
    clearInterval(timer);
  });
}

async function sendStatic(response: ServerResponse, name: string): Promise<void> {
  const type = STATIC_FILES[name];
  if (!type) return sendJson(response, 404, { detail: `no static file ${name}` });
  const body = await readFile(path.join(WEB_DIR, name));
  response.writeHead(200, { "content-type": type, "content-length": String(body.length), "cache-control": "no-cache", "x-content-type-options": "nosniff" });
  response.end(body);
}
