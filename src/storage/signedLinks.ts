import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { KittyError } from "../core/errors.js";

/**
 * Download links for images in the local folder that other hosts can open: `/files/<key>?exp=…&sig=…` on this
 * server's HTTP door, signed with a key kept in the data dir, expiring like S3's presigned URLs. No token is
 * needed to follow one; altering or outliving it gets a refusal.
 */
export class LinkSigner {
  private constructor(private readonly secret: Buffer) {}

  /** The data dir's signing key, made on first use (readable by its owner only). */
  static forHome(home: string): LinkSigner {
    const file = path.join(home, "link-signing.key");
    if (!existsSync(file)) {
      mkdirSync(home, { recursive: true });
      // Written whole under another name, then linked into place: a process starting at the same moment sees
      // either no key or the whole key, never an empty one; if both write, the first link wins and both read it.
      const draft = `${file}.${process.pid}.${randomBytes(4).toString("hex")}`;
      writeFileSync(draft, randomBytes(32).toString("hex"), { mode: 0o600 });
      try {
        linkSync(draft, file);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
      } finally {
        rmSync(draft, { force: true });
      }
    }
    const secret = Buffer.from(readFileSync(file, "utf8").trim(), "hex");
    // An empty or short key would let anyone sign links.
    if (secret.length !== 32) {
      throw new KittyError("config_invalid", `${file} does not hold a 32-byte hex key; delete it and a new one is made (links signed with the old one stop working)`);
    }
    return new LinkSigner(secret);
  }

  private signature(key: string, expiresAt: number): Buffer {
    return createHmac("sha256", this.secret).update(`${key}\n${expiresAt}`).digest();
  }

  /** A link valid for `ttlSeconds`, starting with `baseUrl` (this server as other hosts reach it). */
  link(baseUrl: string, key: string, ttlSeconds: number, now = Date.now()): { url: string; expiresAt: Date } {
    const expiresAt = Math.floor(now / 1000) + ttlSeconds;
    const sig = this.signature(key, expiresAt).toString("base64url");
    const encodedKey = key.split("/").map(encodeURIComponent).join("/");
    return { url: `${baseUrl}/files/${encodedKey}?exp=${expiresAt}&sig=${sig}`, expiresAt: new Date(expiresAt * 1000) };
  }

  /** Why a link is refused, or null when it is good. */
  check(key: string, exp: string | null, sig: string | null, now = Date.now()): string | null {
    const expiresAt = Number(exp);
    if (!exp || !sig || !Number.isInteger(expiresAt)) return "the link lacks its exp and sig parameters; ask select_image for a new one";
    const given = Buffer.from(sig, "base64url");
    const wanted = this.signature(key, expiresAt);
    if (given.length !== wanted.length || !timingSafeEqual(given, wanted)) return "the link's signature does not match; ask select_image for a new one";
    if (expiresAt * 1000 < now) return `the link expired at ${new Date(expiresAt * 1000).toISOString()}; ask select_image for a new one`;
    return null;
  }
}
