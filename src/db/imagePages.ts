// The listing's paging rule, shared by both databases: newest first by (created_at, key), a keyset cursor, and an
// `index` that numbers the whole listing across pages.
import { KittyError } from "../core/errors.js";
import type { ImagePage, ImageRecord } from "../queue/ports.js";

/** Where a page ends: the last row shown, and the listing index the next page starts at. */
export interface Cursor {
  createdAt: string;
  key: string;
  nextIndex: number;
}

function encodeCursor(cursor: Cursor): string {
  return Buffer.from(JSON.stringify([cursor.createdAt, cursor.key, cursor.nextIndex])).toString("base64url");
}

/** A page of a newest-first listing from up to `limit + 1` rows (the extra one only says another page exists). */
export function pageOf<Row>(rows: Row[], limit: number, start: Cursor | null, toRecord: (row: Row) => ImageRecord): ImagePage {
  const firstIndex = start?.nextIndex ?? 1;
  const images = rows.slice(0, limit).map((row, offset) => ({ ...toRecord(row), index: firstIndex + offset }));
  const last = images.at(-1);
  const nextCursor = rows.length > limit && last ? encodeCursor({ createdAt: last.createdAt, key: last.key, nextIndex: last.index + 1 }) : null;
  return { images, nextCursor };
}

export function decodeCursor(raw: string): Cursor {
  try {
    const [createdAt, key, nextIndex] = JSON.parse(Buffer.from(raw, "base64url").toString("utf8")) as unknown[];
    if (typeof createdAt === "string" && typeof key === "string" && Number.isInteger(nextIndex)) {
      return { createdAt, key, nextIndex: nextIndex as number };
    }
  } catch {
    // fall through to the error below
  }
  throw new KittyError("invalid_argument", "cursor is not one list_latest_images returned; omit it to start from the newest image");
}

/**
 * The keys a reference may name, most likely first: the key itself, or each place the prefix occurs in a URL's
 * path (a bucket may be called `images` too). Only a key the index holds counts.
 */
export function keysIn(reference: string, keyPrefix: string): string[] {
  let text = reference.trim();
  try {
    text = decodeURIComponent(new URL(text).pathname);
  } catch {
    // not a URL: a key
  }
  const keys: string[] = [];
  for (let at = text.indexOf(keyPrefix); at >= 0; at = text.indexOf(keyPrefix, at + 1)) {
    const key = /^[A-Za-z0-9._/-]+?\.png/.exec(text.slice(at))?.[0];
    if (key !== undefined) keys.push(key);
  }
  return keys;
}
