import type { Db } from "./database.js";
import { KittyError } from "../../core/errors.js";
import type { Maybe } from "../../queue/queueStore.js";

export interface ImageRecord {
  key: string;
  jobId: string;
  createdAt: string;
  prompt: string;
  model: string;
  width: number;
  height: number;
  seed: number;
  metadata: Record<string, unknown>;
}

interface ImageRow {
  key: string;
  job_id: string;
  created_at: string;
  prompt: string;
  model: string;
  width: number;
  height: number;
  seed: number;
  metadata: string;
}

const toRecord = (row: ImageRow): ImageRecord => ({
  key: row.key,
  jobId: row.job_id,
  createdAt: row.created_at,
  prompt: row.prompt,
  model: row.model,
  width: row.width,
  height: row.height,
  seed: row.seed,
  metadata: JSON.parse(row.metadata) as Record<string, unknown>,
});

/** A page of the listing, newest first; `index` numbers the whole listing from 1 (the newest image). */
export interface ImagePage {
  images: Array<ImageRecord & { index: number }>;
  nextCursor: string | null;
}

/**
 * What the doors read of the image index, whichever database holds it: SQLite answers at once, Postgres later,
 * and the doors await either.
 */
export interface ImageIndexReader {
  latest(limit: number, cursor?: string): Maybe<ImagePage>;
  count(): Maybe<number>;
  byKey(key: string): Maybe<ImageRecord | undefined>;
  ofJob(jobId: string): Maybe<ImageRecord[]>;
  byReference(reference: string, keyPrefix: string): Maybe<ImageRecord | undefined>;
  atIndex(index: number): Maybe<ImageRecord | undefined>;
}

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
export function pageOf<Row>(
  rows: Row[],
  limit: number,
  start: Cursor | null,
  toRecord: (row: Row) => ImageRecord,
): { images: Array<ImageRecord & { index: number }>; nextCursor: string | null } {
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
 * The SQLite index of stored images. Listing walks an index newest-first and stops after `limit` rows, so it
 * costs the same with ten images or ten million (the original listed the whole bucket and broke past 1000).
 */
export class ImageIndex implements ImageIndexReader {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare(
        `INSERT INTO images (key, job_id, created_at, prompt, model, width, height, seed, metadata)
         VALUES (@key, @jobId, @createdAt, @prompt, @model, @width, @height, @seed, @metadata)
         ON CONFLICT (key) DO NOTHING`,
      ),
      firstPage: db.prepare(`SELECT * FROM images ORDER BY created_at DESC, key DESC LIMIT ?`),
      nextPage: db.prepare(
        `SELECT * FROM images WHERE (created_at, key) < (?, ?) ORDER BY created_at DESC, key DESC LIMIT ?`,
      ),
      byKey: db.prepare(`SELECT * FROM images WHERE key = ?`),
      count: db.prepare(`SELECT COUNT(*) AS n FROM images`),
      ofJob: db.prepare(`SELECT * FROM images WHERE job_id = ? ORDER BY created_at, key`),
      atIndex: db.prepare(`SELECT * FROM images ORDER BY created_at DESC, key DESC LIMIT 1 OFFSET ?`),
    };
  }

  add(record: ImageRecord): void {
    this.statements.insert.run({ ...record, metadata: JSON.stringify(record.metadata) });
  }

  /** Newest first. `index` numbers the whole listing from 1 (the newest image), across pages. */
  latest(limit: number, cursor?: string): ImagePage {
    const start = cursor ? decodeCursor(cursor) : null;
    // One extra row tells whether another page exists without a COUNT over the table.
    const rows = (start
      ? this.statements.nextPage.all(start.createdAt, start.key, limit + 1)
      : this.statements.firstPage.all(limit + 1)) as ImageRow[];
    return pageOf(rows, limit, start, toRecord);
  }

  /** Images indexed; a scan of the key index, so for /metrics and the gallery's page count, not per listing. */
  count(): number {
    return (this.statements.count.get() as { n: number }).n;
  }

  byKey(key: string): ImageRecord | undefined {
    const row = this.statements.byKey.get(key) as ImageRow | undefined;
    return row && toRecord(row);
  }

  /** A job's images in the order they were made (one, or a batch's). */
  ofJob(jobId: string): ImageRecord[] {
    return (this.statements.ofJob.all(jobId) as ImageRow[]).map(toRecord);
  }

  /**
   * The image a key, an imageRef's storageUri or its downloadUrl names. The key is found inside the URL's path:
   * each place the key prefix occurs is tried (a bucket may be called `images` too), and only a key indexed here counts.
   */
  byReference(reference: string, keyPrefix: string): ImageRecord | undefined {
    for (const key of keysIn(reference, keyPrefix)) {
      const record = this.byKey(key);
      if (record) return record;
    }
    return undefined;
  }

  /** 1 = the newest image, as in list_latest_images. */
  atIndex(index: number): ImageRecord | undefined {
    const row = this.statements.atIndex.get(index - 1) as ImageRow | undefined;
    return row && toRecord(row);
  }
}

/** The keys a reference may name, most likely first: the key itself, or each place the prefix occurs in a URL's path. */
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
