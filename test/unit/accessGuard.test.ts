import { describe, expect, it } from "vitest";
import { accessPolicy, checkAccess, isToken, sessionCookie, type RequestFacts } from "../../src/http/accessGuard.js";

const TOKEN = "0123456789abcdef0123456789abcdef";
const withToken = accessPolicy({ token: TOKEN, trustedNetworks: [{ address: "172.16.0.0", prefix: 12, family: "ipv4" }], publicUrl: "http://studio.local:8089", extraAllowedHosts: ["kitty.lan"] }, "0.0.0.0", "Mac-Studio");
const noToken = accessPolicy({ token: null, trustedNetworks: [], publicUrl: null, extraAllowedHosts: [] }, "127.0.0.1", "Mac-Studio");

const request = (headers: Record<string, string>, remoteAddress = "192.168.1.20"): RequestFacts => ({ headers: { host: "studio.local:8089", ...headers }, remoteAddress });

/** The value a browser keeps after logging in, as the Set-Cookie header gives it. */
const sessionValueOf = (policy: ReturnType<typeof accessPolicy>) => /kitty_images_session=([^;]+)/.exec(sessionCookie(policy, 60))![1]!;

describe("the HTTP access guard", () => {
  it("logs a browser in with a cookie derived from the token, never the token itself", () => {
    const cookie = sessionCookie(withToken, 3600);
    expect(cookie).toMatch(/^kitty_images_session=[\w-]{43}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=3600$/);
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
    ["the gallery's session cookie among others", request({ cookie: `theme=dark; kitty_images_session=${sessionValueOf(withToken)}; other=1` }), withToken],
    ["a trusted network without a token (KITTY's gateway on its Docker network)", request({}, "172.18.0.5"), withToken],
    ["a trusted network seen as IPv4-mapped IPv6", request({}, "::ffff:172.18.0.5"), withToken],
    ["this machine's name when bound to every interface", request({ host: "mac-studio:8089", authorization: `Bearer ${TOKEN}` }), withToken],
    ["a host the operator listed, with its own Origin", request({ host: "kitty.lan", origin: "http://kitty.lan:3000", authorization: `Bearer ${TOKEN}` }), withToken],
    ["loopback when no token is set", { headers: { host: "localhost:8089", origin: "http://localhost:5173" }, remoteAddress: "127.0.0.1" }, noToken],
    ["IPv6 loopback when no token is set", { headers: { host: "[::1]:8089" }, remoteAddress: "::1" }, noToken],
  ];

  it.each(served)("serves %s", (_name, facts, policy) => {
    expect(checkAccess(facts, policy)).toBeNull();
  });

  it("asks a signed file link for the right Host only, not for the token", () => {
    expect(checkAccess(request({}), withToken, { tokenRequired: false })).toBeNull();
    expect(checkAccess(request({ host: "evil.example" }), withToken, { tokenRequired: false })).toMatchObject({ status: 403 });
  });
});
