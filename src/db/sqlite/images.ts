import type { ImageIndex, ImagePage, ImageRecord } from "../../queue/ports.js";
import { decodeCursor, keysIn, pageOf } from "../imagePages.js";
import type { Db } from "./database.js";

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

/**
 * The SQLite index of stored images. Listing walks an index newest-first and stops after `limit` rows, so it
 * costs the same with ten images or ten million (the original listed the whole bucket and broke past 1000).
 */
export class SqliteImageIndex implements ImageIndex {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare(
        `INSERT INTO images (key, job_id, created_at, prompt, model, width, height, seed, metadata)
         VALUES (@key, @jobId, @createdAt, @prompt, @model, @width, @height, @seed, @metadata)
         ON CONFLICT (key) DO NOTHING`,
      ),
      firstPage: db.prepare(`SELECT * FROM images ORDER BY created_at DESC, key DESC LIMIT ?`),
      nextPage: db.prepare(`SELECT * FROM images WHERE (created_at, key) < (?, ?) ORDER BY created_at DESC, key DESC LIMIT ?`),
      byKey: db.prepare(`SELECT * FROM images WHERE key = ?`),
      count: db.prepare(`SELECT COUNT(*) AS n FROM images`),
      ofJob: db.prepare(`SELECT * FROM images WHERE job_id = ? ORDER BY created_at, key`),
      atIndex: db.prepare(`SELECT * FROM images ORDER BY created_at DESC, key DESC LIMIT 1 OFFSET ?`),
    };
  }

  /** Synchronous, for the job store's transactions (an image is indexed with its job's row). */
  add(record: ImageRecord): void {
    this.statements.insert.run({ ...record, metadata: JSON.stringify(record.metadata) });
  }

  async latest(limit: number, cursor?: string): Promise<ImagePage> {
    const start = cursor ? decodeCursor(cursor) : null;
    // One extra row tells whether another page exists without a COUNT over the table.
    const rows = (start ? this.statements.nextPage.all(start.createdAt, start.key, limit + 1) : this.statements.firstPage.all(limit + 1)) as ImageRow[];
    return pageOf(rows, limit, start, toRecord);
  }

  async count(): Promise<number> {
    return this.countNow();
  }

  countNow(): number {
    return (this.statements.count.get() as { n: number }).n;
  }

  async byKey(key: string): Promise<ImageRecord | undefined> {
    return this.byKeyNow(key);
  }

  private byKeyNow(key: string): ImageRecord | undefined {
    const row = this.statements.byKey.get(key) as ImageRow | undefined;
    return row && toRecord(row);
  }

  async ofJob(jobId: string): Promise<ImageRecord[]> {
    return (this.statements.ofJob.all(jobId) as ImageRow[]).map(toRecord);
  }

  async byReference(reference: string, keyPrefix: string): Promise<ImageRecord | undefined> {
    for (const key of keysIn(reference, keyPrefix)) {
      const record = this.byKeyNow(key);
      if (record) return record;
    }
    return undefined;
  }

  async atIndex(index: number): Promise<ImageRecord | undefined> {
    const row = this.statements.atIndex.get(index - 1) as ImageRow | undefined;
    return row && toRecord(row);
  }
}
