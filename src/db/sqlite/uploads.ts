import type { UploadIndex, UploadRecord } from "../../queue/ports.js";
import type { Db } from "./database.js";

interface UploadRow {
  key: string;
  created_at: string;
  width: number;
  height: number;
  metadata: string;
}

const toRecord = (row: UploadRow): UploadRecord => ({ key: row.key, createdAt: row.created_at, width: row.width, height: row.height, metadata: JSON.parse(row.metadata) as Record<string, unknown> });

/** The uploads a user brought, in this data dir's SQLite file. */
export class SqliteUploadIndex implements UploadIndex {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare(`INSERT INTO uploads (key, created_at, width, height, metadata) VALUES (@key, @createdAt, @width, @height, @metadata) ON CONFLICT (key) DO NOTHING`),
      byKey: db.prepare(`SELECT * FROM uploads WHERE key = ?`),
      latest: db.prepare(`SELECT * FROM uploads ORDER BY created_at DESC, key DESC LIMIT ?`),
    };
  }

  async add(record: UploadRecord): Promise<void> {
    this.statements.insert.run({ ...record, metadata: JSON.stringify(record.metadata) });
  }

  async byKey(key: string): Promise<UploadRecord | undefined> {
    const row = this.statements.byKey.get(key) as UploadRow | undefined;
    return row && toRecord(row);
  }

  async latest(limit: number): Promise<UploadRecord[]> {
    return (this.statements.latest.all(limit) as UploadRow[]).map(toRecord);
  }
}
