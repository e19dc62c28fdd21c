import type { IncomingMessage, ServerResponse } from "node:http";
import { isToken, sessionCookie, type AccessPolicy } from "../accessGuard.js";
import { BodyTooLarge, readFormBody, redirect, sendHtml } from "../body.js";
import { html } from "./html.js";
import { loginPage, messagePage } from "./pages.js";

/** How long a browser stays logged in to the gallery. */
const SESSION_MAX_AGE_S = 30 * 24 * 3600;

/**
 * Logging in: a GET with `?token=` on any gallery page, or the form at /gallery/login. The door lets these past
 * the token check (they are how one gets past it) and sends nothing else here.
 */
export async function handleGalleryLogin(policy: AccessPolicy, request: IncomingMessage, response: ServerResponse, url: URL): Promise<void> {
  const given = url.searchParams.get("token");
  if (given !== null && request.method === "GET") {
    // Trade the token for the cookie at once, and drop it from the address so history and logs never keep it.
    url.searchParams.delete("token");
    const next = safeNext(`${url.pathname}${url.search}`);
    if (isToken(given, policy)) redirect(response, next, { "set-cookie": sessionCookie(policy, SESSION_MAX_AGE_S) });
    else sendHtml(response, 401, loginPage(next, "That token is not this server's KITTY_IMAGES_TOKEN."));
    return;
  }
  if (request.method !== "POST") return sendHtml(response, 200, loginPage(safeNext(url.searchParams.get("next"))));
  const form = await readGalleryForm(request, response);
  if (!form) return;
  const next = safeNext(form.get("next"));
  if (isToken(form.get("token") ?? "", policy)) redirect(response, next, { "set-cookie": sessionCookie(policy, SESSION_MAX_AGE_S) });
  else sendHtml(response, 401, loginPage(next, "That token is not this server's KITTY_IMAGES_TOKEN."));
}

/** A posted form; null once a body over the limit has been answered 413 (the rest of it is not read). */
export async function readGalleryForm(request: IncomingMessage, response: ServerResponse): Promise<URLSearchParams | null> {
  try {
    return await readFormBody(request);
  } catch (error) {
    if (!(error instanceof BodyTooLarge)) throw error;
    sendHtml(response, 413, messagePage("Too large", html`<p>${error.message}</p>`), { connection: "close" });
    return null;
  }
}

/** Only a gallery path, printable ASCII: a login must not redirect anywhere else, nor put a line break in a header. */
function safeNext(next: string | null | undefined): string {
  return next && /^\/gallery(?:[/?]|$)/.test(next) && !next.startsWith("//") && /^[\x21-\x7e]*$/.test(next) ? next : "/gallery";
}

/** Where a browser without the cookie is sent instead of a JSON 401. */
export function loginRedirect(response: ServerResponse, url: URL): void {
  redirect(response, `/gallery/login?next=${encodeURIComponent(`${url.pathname}${url.search}`)}`);
}

