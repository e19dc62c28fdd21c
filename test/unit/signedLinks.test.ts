import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { LinkSigner } from "../../src/storage/signedLinks.js";

describe("signed file links", () => {
  const home = mkdtempSync(path.join(tmpdir(), "kitty-links-"));
  const signer = LinkSigner.forHome(home);
  const key = "images/20261128_010927_c336608e.png";
  const now = Date.UTC(2026, 10, 28, 12, 0, 0);
  const { url, expiresAt } = signer.link("http://studio.local:8089", key, 3600, now);
  const params = new URL(url).searchParams;

  it("point at this server's /files route and expire after the TTL", () => {
    expect(url.startsWith(`http://studio.local:8089/files/${key}?exp=`)).toBe(true);
    expect(expiresAt.toISOString()).toBe("2026-11-28T13:00:00.000Z");
    expect(signer.check(key, params.get("exp"), params.get("sig"), now + 3599_000)).toBeNull();
  });

  it("are refused once expired, altered, or moved to another key", () => {
    expect(signer.check(key, params.get("exp"), params.get("sig"), now + 3601_000)).toMatch(/expired at 2026-11-28T13:00:00.000Z/);
    expect(signer.check(key, String(Number(params.get("exp")) + 3600), params.get("sig"), now)).toMatch(/signature does not match/);
    expect(signer.check("images/other.png", params.get("exp"), params.get("sig"), now)).toMatch(/signature does not match/);
    expect(signer.check(key, null, null, now)).toMatch(/lacks its exp and sig/);
  });

  it("keep working across restarts: the key lives in the data dir; another data dir's key does not sign them", () => {
    expect(LinkSigner.forHome(home).check(key, params.get("exp"), params.get("sig"), now)).toBeNull();
    const other = LinkSigner.forHome(mkdtempSync(path.join(tmpdir(), "kitty-links-")));
    expect(other.check(key, params.get("exp"), params.get("sig"), now)).toMatch(/signature does not match/);
  });
});
