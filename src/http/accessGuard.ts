import { createHash, createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { BlockList, isIP } from "node:net";
import type { Network } from "../config.js";

/** Who may talk to the HTTP door, decided once from the configuration. */
export interface AccessPolicy {
  token: string | null;
  /** What the gallery's cookie holds once the token was given: derived from it, so the cookie never carries the token itself. */
  session: string | null;
  /** Callers here need no token (KITTY_IMAGES_TRUSTED_NETWORKS). */
  trusted: BlockList;
  /** Host names accepted in the Host header and in an Origin (DNS rebinding). */
  allowedHosts: Set<string>;
  /** The port this door listens on: a page's Origin must name it too, since browsers let pages on other ports of the same host send cookies. Set once listening. */
  port: number | null;
  /** Whole origins (scheme, host, port) that may call besides this door's own: the public URL's, and listed hosts given with a port. */
  extraOrigins: Set<string>;
  /** Signs the gallery's forms (CSRF): derived from the token, so every front-end behind one proxy accepts another's forms. */
  formKey: Buffer;
}

export interface Refusal {
  status: 401 | 403;
  error: "unauthorized" | "forbidden_host" | "forbidden_origin";
  message: string;
}

export interface RequestFacts {
  headers: Record<string, string | string[] | undefined>;
  remoteAddress: string | undefined;
}

const LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "::1"];

/** Host names compare lower-case, IPv6 literals without brackets, never with a port. */
function canonicalHost(name: string): string {
  return name.trim().toLowerCase().replace(/^\[(.*)\]$/, "$1");
}

/**
 * The policy for a door bound to `bindHost`. Host names allowed: loopback, the bind address, the public URL's
 * host, this machine's name when bound to every interface, and any the operator lists.
 */
export function accessPolicy(
  http: { token: string | null; trustedNetworks: Network[]; publicUrl: string | null; extraAllowedHosts: string[] },
  bindHost: string,
  machineName: string,
  port: number | null = null,
): AccessPolicy {
  const hosts = new Set([...LOOPBACK_HOSTS, ...http.extraAllowedHosts.map((name) => hostnameOf(name))]);
  hosts.add(canonicalHost(["0.0.0.0", "::"].includes(bindHost) ? machineName : bindHost));
  const extraOrigins = new Set<string>();
  if (http.publicUrl) {
    hosts.add(canonicalHost(new URL(http.publicUrl).hostname));
    extraOrigins.add(new URL(http.publicUrl).origin);
  }
  for (const listed of http.extraAllowedHosts) {
    // "kitty.lan:3000": a page served there may call this door; a name without a port may only at this door's port.
    if (!/:\d+$/.test(listed) || listed.includes("://")) continue;
    for (const scheme of ["http", "https"]) extraOrigins.add(new URL(`${scheme}://${listed.trim()}`).origin);
  }
  const token = http.token?.trim() || null;
  const formKey = token ? createHash("sha256").update(`kitty-images gallery forms\n${token}`).digest() : randomBytes(32);
  return { token, session: token && sessionValue(token), trusted: toBlockList(http.trustedNetworks), allowedHosts: hosts, port, extraOrigins, formKey };
}

/** The gallery's login cookie. HttpOnly and SameSite=Strict: page scripts cannot read it, other sites cannot send it. */
export const SESSION_COOKIE = "kitty_images_session";

function sessionValue(token: string): string {
  return createHash("sha256").update(`kitty-images gallery session\n${token}`).digest("base64url");
}

/** True when `given` is the server's token (the gallery's login form and `?token=`). */
export function isToken(given: string, policy: AccessPolicy): boolean {
  return policy.token !== null && tokenMatches(given.trim(), policy.token);
}

/**
 * The Set-Cookie header that logs a browser in for `maxAgeSeconds`. Scoped to the gallery: the cookie is a
 * credential for the gallery's pages alone (checkAccess takes it nowhere else), so the browser need not send it elsewhere.
 */
export function sessionCookie(policy: AccessPolicy, maxAgeSeconds: number): string {
  return `${SESSION_COOKIE}=${policy.session ?? ""}; Path=/gallery; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}`;
}

/**
 * The hidden field every gallery form carries (CSRF). A page elsewhere cannot read the gallery to learn it; it is
 * tied to the session, so a form from before the token changed is refused. Without a token it lasts as long as the process.
 */
export function formToken(policy: AccessPolicy): string {
  return createHmac("sha256", policy.formKey).update(`form\n${policy.session ?? "no session"}`).digest("base64url");
}

/** True when a posted form carries this server's form token. */
export function isFormToken(given: string | null | undefined, policy: AccessPolicy): boolean {
  return typeof given === "string" && tokenMatches(given, formToken(policy));
}

function cookieOf(facts: RequestFacts, name: string): string | undefined {
  for (const part of (header(facts, "cookie") ?? "").split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return value.join("=");
  }
  return undefined;
}

function toBlockList(networks: Network[]): BlockList {
  const list = new BlockList();
  for (const { address, prefix, family } of networks) list.addSubnet(address, prefix, family);
  return list;
}

const LOOPBACK = toBlockList([
  { address: "127.0.0.0", prefix: 8, family: "ipv4" },
  { address: "::1", prefix: 128, family: "ipv6" },
]);

/** `::ffff:10.1.2.3` (an IPv4 client on a dual-stack socket) is 10.1.2.3. */
function normalize(address: string): { address: string; family: "ipv4" | "ipv6" } | null {
  const plain = address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
  const version = isIP(plain);
  return version === 0 ? null : { address: plain, family: version === 4 ? "ipv4" : "ipv6" };
}

/** True for a loopback address or `localhost` (with or without IPv6 brackets). */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (address === undefined) return false;
  const plain = canonicalHost(address);
  if (plain === "localhost") return true;
  const ip = normalize(plain);
  return ip !== null && LOOPBACK.check(ip.address, ip.family);
}

function hostnameOf(hostHeader: string): string {
  // "[::1]:8089" → "::1", "studio.local:8089" → "studio.local"
  const bracketed = hostHeader.match(/^\[([^\]]+)\](?::\d+)?$/);
  return canonicalHost(bracketed ? bracketed[1]! : hostHeader.replace(/:\d+$/, ""));
}

function header(facts: RequestFacts, name: string): string | undefined {
  const value = facts.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Host names alone are not enough: SameSite treats every port of a host as one site, so a page on another port must not pass. */
function originAllowed(origin: string, policy: AccessPolicy): boolean {
  let url: URL;
  try {
    url = new URL(origin);
  } catch {
    return false; // "null" (a sandboxed page) and anything else that is not a URL
  }
  if (policy.extraOrigins.has(url.origin)) return true;
  const port = Number(url.port || (url.protocol === "https:" ? 443 : 80));
  // port null: a policy not yet bound to a listening door (unit tests); the door sets it before the first request.
  return url.protocol === "http:" && policy.allowedHosts.has(canonicalHost(url.hostname)) && (policy.port === null || port === policy.port);
}

/** Compares digests so that neither the token's length nor its content leaks through timing. */
function tokenMatches(given: string, expected: string): boolean {
  const digest = (text: string) => createHash("sha256").update(text).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** True when the Host header names this server (not a DNS-rebinding page's name for it). */
export function hostAllowed(facts: RequestFacts, policy: AccessPolicy): boolean {
  const host = header(facts, "host");
  return host !== undefined && policy.allowedHosts.has(hostnameOf(host));
}

/**
 * Decides one request: null to serve it, or the refusal to answer with. Host and Origin first (a page on another
 * site must not reach a loopback server through DNS rebinding), then the token, unless the caller is on a
 * trusted network. Without a token only loopback and trusted networks are served.
 */
export function checkAccess(
  facts: RequestFacts,
  policy: AccessPolicy,
  { tokenRequired = true, cookieAccepted = false }: { tokenRequired?: boolean; cookieAccepted?: boolean } = {},
): Refusal | null {
  const allowed = [...policy.allowedHosts].join(", ");
  if (!hostAllowed(facts, policy)) {
    return { status: 403, error: "forbidden_host", message: `Host '${header(facts, "host") ?? ""}' is not one this server answers to (allowed: ${allowed}; add names with KITTY_IMAGES_ALLOWED_HOSTS)` };
  }
  const origin = header(facts, "origin");
  if (origin !== undefined && !originAllowed(origin, policy)) {
    const own = policy.port === null ? "" : ` at port ${policy.port}`;
    const extra = policy.extraOrigins.size > 0 ? `, or ${[...policy.extraOrigins].join(", ")}` : "";
    return { status: 403, error: "forbidden_origin", message: `Origin '${origin}' may not call this server (allowed: pages on ${allowed}${own}${extra})` };
  }
  // A signed file link is its own permission: it needs the right Host and Origin, not the token.
  if (!tokenRequired) return null;
  const ip = facts.remoteAddress ? normalize(facts.remoteAddress) : null;
  const trusted = ip !== null && policy.trusted.check(ip.address, ip.family);
  if (trusted) return null;
  if (!policy.token) {
    if (ip !== null && LOOPBACK.check(ip.address, ip.family)) return null;
    return { status: 401, error: "unauthorized", message: `${facts.remoteAddress ?? "this address"} is neither loopback nor in KITTY_IMAGES_TRUSTED_NETWORKS, and no KITTY_IMAGES_TOKEN is set` };
  }
  const bearer = header(facts, "authorization")?.match(/^Bearer\s+(.+)$/i)?.[1];
  const given = bearer ?? header(facts, "x-api-key");
  if (given === undefined) {
    // The gallery's cookie opens the gallery only: a browser sends it along with requests other sites' pages make.
    const cookie = cookieAccepted ? cookieOf(facts, SESSION_COOKIE) : undefined;
    if (cookie !== undefined && policy.session !== null && tokenMatches(cookie, policy.session)) return null;
    return { status: 401, error: "unauthorized", message: "this server needs its token: send 'Authorization: Bearer <KITTY_IMAGES_TOKEN>' or 'X-API-Key: <KITTY_IMAGES_TOKEN>' (a browser logs in at /gallery/login)" };
  }
  if (!tokenMatches(given.trim(), policy.token)) return { status: 401, error: "unauthorized", message: "the token does not match KITTY_IMAGES_TOKEN" };
  return null;
}
