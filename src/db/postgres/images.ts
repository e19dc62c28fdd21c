import type pg from "pg";
import type { ImageIndex, ImagePage, ImageRecord } from "../../queue/ports.js";
import { decodeCursor, keysIn, pageOf } from "../imagePages.js";

interface PgImageRow {
  key: string;
  job_id: string;
  created_at: string;
  prompt: string;
  model: string;
  width: number;
  height: number;
  seed: string; // bigint: pg hands it over as text
  metadata: Record<string, unknown>;
}

const toRecord = (row: PgImageRow): ImageRecord => ({
  key: row.key,
  jobId: row.job_id,
  createdAt: row.created_at,
  prompt: row.prompt,
  model: row.model,
  width: row.width,
  height: row.height,
  seed: Number(row.seed),
  metadata: row.metadata,
});

/**
 * The image index on Postgres, one gallery for every front-end: the SQLite ImageIndex's listing (newest first by
 * (created_at, key), keyset cursor, `index` across pages) and lookups, async.
 */
export class PgImageIndex implements ImageIndex {
  constructor(private readonly pool: pg.Pool) {}

  /** `client`: the transaction that marks the job done (PgJobStore.completeWithImages), so a listed image always has a done job. */
  async add(record: ImageRecord, client: pg.Pool | pg.PoolClient = this.pool): Promise<void> {
    await client.query(
      `INSERT INTO images (key, job_id, created_at, prompt, model, width, height, seed, metadata)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (key) DO NOTHING`,
      [record.key, record.jobId, record.createdAt, record.prompt, record.model, record.width, record.height, record.seed, JSON.stringify(record.metadata)],
    );
  }

  async latest(limit: number, cursor?: string): Promise<ImagePage> {
    const start = cursor ? decodeCursor(cursor) : null;
    // One extra row tells whether another page exists without a count over the table.
    const { rows } = start
      ? await this.pool.query<PgImageRow>(
          `SELECT * FROM images WHERE (created_at, key) < ($1, $2) ORDER BY created_at DESC, key DESC LIMIT $3`,
          [start.createdAt, start.key, limit + 1],
        )
      : await this.pool.query<PgImageRow>(`SELECT * FROM images ORDER BY created_at DESC, key DESC LIMIT $1`, [limit + 1]);
    return pageOf(rows, limit, start, toRecord);
  }

  async count(): Promise<number> {
    const { rows } = await this.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM images`);
    return rows[0]!.n;
  }

  async byKey(key: string): Promise<ImageRecord | undefined> {
    const { rows } = await this.pool.query<PgImageRow>(`SELECT * FROM images WHERE key = $1`, [key]);
    return rows[0] && toRecord(rows[0]);
  }

  async ofJob(jobId: string): Promise<ImageRecord[]> {
    const { rows } = await this.pool.query<PgImageRow>(`SELECT * FROM images WHERE job_id = $1 ORDER BY created_at, key`, [jobId]);
    return rows.map(toRecord);
  }

  async byReference(reference: string, keyPrefix: string): Promise<ImageRecord | undefined> {
    for (const key of keysIn(reference, keyPrefix)) {
      const record = await this.byKey(key);
      if (record) return record;
    }
    return undefined;
  }

  async atIndex(index: number): Promise<ImageRecord | undefined> {
    const { rows } = await this.pool.query<PgImageRow>(`SELECT * FROM images ORDER BY created_at DESC, key DESC LIMIT 1 OFFSET $1`, [index - 1]);
    return rows[0] && toRecord(rows[0]);
  }
}
