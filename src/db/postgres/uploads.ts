import type pg from "pg";
import type { UploadIndex, UploadRecord } from "../../queue/ports.js";

interface PgUploadRow {
  key: string;
  created_at: string;
  width: number;
  height: number;
  metadata: Record<string, unknown>;
}

const toRecord = (row: PgUploadRow): UploadRecord => ({ key: row.key, createdAt: row.created_at, width: row.width, height: row.height, metadata: row.metadata });

/** The uploads every front-end of a studio sees: an image brought through one door is usable from any other. */
export class PgUploadIndex implements UploadIndex {
  constructor(private readonly pool: pg.Pool) {}

  async add(record: UploadRecord): Promise<void> {
    await this.pool.query(`INSERT INTO uploads (key, created_at, width, height, metadata) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (key) DO NOTHING`, [
      record.key,
      record.createdAt,
      record.width,
      record.height,
      JSON.stringify(record.metadata),
    ]);
  }

  async byKey(key: string): Promise<UploadRecord | undefined> {
    const { rows } = await this.pool.query<PgUploadRow>(`SELECT * FROM uploads WHERE key = $1`, [key]);
    return rows[0] && toRecord(rows[0]);
  }

  async latest(limit: number): Promise<UploadRecord[]> {
    const { rows } = await this.pool.query<PgUploadRow>(`SELECT * FROM uploads ORDER BY created_at DESC, key DESC LIMIT $1`, [limit]);
    return rows.map(toRecord);
  }
}
