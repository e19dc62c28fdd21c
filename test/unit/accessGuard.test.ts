import { describe, expect, it } from "vitest";
import { accessPolicy, checkAccess, formToken, isFormToken, isToken, sessionCookie, type RequestFacts } from "../../src/http/accessGuard.js";

const TOKEN = "0123456789abcdef0123456789abcdef";
const withToken = accessPolicy({ token: TOKEN, trustedNetworks: [{ address: "172.16.0.0", prefix: 12, family: "ipv4" }], publicUrl: "https://images.studio.example", extraAllowedHosts: ["kitty.lan", "kitty-ui.lan:3000"] }, "0.0.0.0", "Mac-Studio", 8089);
const noToken = accessPolicy({ token: null, trustedNetworks: [], publicUrl: null, extraAllowedHosts: [] }, "127.0.0.1", "Mac-Studio", 8089);

const request = (headers: Record<string, string>, remoteAddress = "192.168.1.20"): RequestFacts => ({ headers: { host: "mac-studio:8089", ...headers }, remoteAddress });

/** The value a browser keeps after logging in, as the Set-Cookie header gives it. */
const sessionValueOf = (policy: ReturnType<typeof accessPolicy>) => /kitty_images_session=([^;]+)/.exec(sessionCookie(policy, 60))![1]!;

describe("the HTTP access guard", () => {
  it("logs a browser in with a cookie derived from the token, never the token itself", () => {
    const cookie = sessionCookie(withToken, 3600);
    expect(cookie).toMatch(/^kitty_images_session=[\w-]{43}; Path=\/gallery; HttpOnly; SameSite=Strict; Max-Age=3600$/);
    expect(cookie).not.toContain(TOKEN);
    expect(isToken(` ${TOKEN} `, withToken)).toBe(true);
    expect(isToken("wrong", withToken)).toBe(false);
    expect(isToken("", noToken)).toBe(false);
  });

  const refused: Array<[string, RequestFacts, ReturnType<typeof accessPolicy>, number, string, RegExp]> = [
    ["no token", request({}), withToken, 401, "unauthorized", /send 'Authorization: Bearer/],
    ["a wrong bearer token", request({ authorization: `Bearer ${TOKEN.replace("0", "1")}` }), withToken, 401, "unauthorized", /does not match/],
    ["a wrong X-API-Key", request({ "x-api-key": "nope" }), withToken, 401, "unauthorized", /does not match/],
    ["a token of another length", request({ authorization: `Bearer ${TOKEN}x` }), withToken, 401, "unauthorized", /does not match/],
    ["a foreign Host (DNS rebinding)", request({ host: "evil.example:8089", authorization: `Bearer ${TOKEN}` }), withToken, 403, "forbidden_host", /Host 'evil.example:8089'/],
    ["no Host at all", { headers: {}, remoteAddress: "127.0.0.1" }, noToken, 403, "forbidden_host", /Host ''/],
    ["a foreign Origin", request({ origin: "https://evil.example", authorization: `Bearer ${TOKEN}` }), withToken, 403, "forbidden_origin", /Origin 'https:\/\/evil.example'/],
    ["an Origin that is not a URL", request({ origin: "null", authorization: `Bearer ${TOKEN}` }), withToken, 403, "forbidden_origin", /Origin 'null'/],
    // SameSite counts every port of a host as one site: a page on another port must not pass for this server's own.
    ["a page on another port of loopback", { headers: { host: "127.0.0.1:8089", origin: "http://127.0.0.1:5173" }, remoteAddress: "127.0.0.1" }, noToken, 403, "forbidden_origin", /pages on .* at port 8089/],
    ["a page on another port of this machine, token and all", request({ origin: "http://mac-studio:9999", authorization: `Bearer ${TOKEN}` }), withToken, 403, "forbidden_origin", /Origin 'http:\/\/mac-studio:9999'/],
    ["a listed host on a port it was not listed with", request({ origin: "http://kitty-ui.lan:4000", authorization: `Bearer ${TOKEN}` }), withToken, 403, "forbidden_origin", /kitty-ui\.lan:3000/],
    ["the public URL's host over plain http (not its origin)", request({ origin: "http://images.studio.example", authorization: `Bearer ${TOKEN}` }), withToken, 403, "forbidden_origin", /https:\/\/images\.studio\.example/],
    ["the gallery's cookie on the API (it opens the gallery alone)", request({ cookie: `kitty_images_session=${sessionValueOf(withToken)}` }), withToken, 401, "unauthorized", /needs its token/],
    ["a session cookie made from another token", request({ cookie: `kitty_images_session=${sessionValueOf(accessPolicy({ token: "another-token", trustedNetworks: [], publicUrl: null, extraAllowedHosts: [] }, "0.0.0.0", "x"))}` }), withToken, 401, "unauthorized", /needs its token/],
    ["the raw token as the cookie", request({ cookie: `kitty_images_session=${TOKEN}` }), withToken, 401, "unauthorized", /needs its token/],
    ["a LAN caller when no token is set", { headers: { host: "127.0.0.1:8089" }, remoteAddress: "192.168.1.20" }, noToken, 401, "unauthorized", /neither loopback nor in KITTY_IMAGES_TRUSTED_NETWORKS/],
  ];

  it.each(refused)("refuses %s", (_name, facts, policy, status, error, message) => {
    const refusal = checkAccess(facts, policy);
    expect(refusal).toMatchObject({ status, error });
    expect(refusal!.message).toMatch(message);
  });

  const served: Array<[string, RequestFacts, ReturnType<typeof accessPolicy>]> = [
    ["the right bearer token", request({ authorization: `Bearer ${TOKEN}` }), withToken],
    ["the right X-API-Key", request({ "x-api-key": TOKEN }), withToken],

    ["a trusted network without a token (KITTY's gateway on its Docker network)", request({}, "172.18.0.5"), withToken],
    ["a trusted network seen as IPv4-mapped IPv6", request({}, "::ffff:172.18.0.5"), withToken],
    ["this machine's name when bound to every interface", request({ host: "mac-studio:8089", authorization: `Bearer ${TOKEN}` }), withToken],
    ["a host the operator listed, with a page at this door's port", request({ host: "kitty.lan:8089", origin: "http://kitty.lan:8089", authorization: `Bearer ${TOKEN}` }), withToken],
    ["a page where a listed host:port serves it", request({ origin: "http://kitty-ui.lan:3000", authorization: `Bearer ${TOKEN}` }), withToken],
    ["a page from the public URL behind a proxy", request({ host: "images.studio.example", origin: "https://images.studio.example", authorization: `Bearer ${TOKEN}` }), withToken],
    ["loopback when no token is set, from its own page", { headers: { host: "localhost:8089", origin: "http://localhost:8089" }, remoteAddress: "127.0.0.1" }, noToken],
    ["IPv6 loopback when no token is set", { headers: { host: "[::1]:8089" }, remoteAddress: "::1" }, noToken],
  ];

  it.each(served)("serves %s", (_name, facts, policy) => {
    expect(checkAccess(facts, policy)).toBeNull();
  });

  it("takes the gallery's cookie, among others, where the door accepts it (the gallery's pages)", () => {
    const facts = request({ cookie: `theme=dark; kitty_images_session=${sessionValueOf(withToken)}; other=1` });
    expect(checkAccess(facts, withToken, { cookieAccepted: true })).toBeNull();
    expect(checkAccess(facts, withToken)).toMatchObject({ status: 401 });
  });

  it("signs gallery forms per session: another token's form, or none, is not this one's", () => {
    const other = accessPolicy({ token: "another-token-0123456789", trustedNetworks: [], publicUrl: null, extraAllowedHosts: [] }, "0.0.0.0", "x", 8089);
    expect(isFormToken(formToken(withToken), withToken)).toBe(true);
    expect(isFormToken(formToken(other), withToken)).toBe(false);
    expect(isFormToken("", withToken)).toBe(false);
    expect(isFormToken(null, withToken)).toBe(false);
  });

  it("asks a signed file link for the right Host only, not for the token", () => {
    expect(checkAccess(request({}), withToken, { tokenRequired: false })).toBeNull();
    expect(checkAccess(request({ host: "evil.example" }), withToken, { tokenRequired: false })).toMatchObject({ status: 403 });
  });
});
