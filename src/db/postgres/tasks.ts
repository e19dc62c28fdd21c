import type pg from "pg";
import type { TaskIndex, TaskRecord } from "../../queue/ports.js";
import { expiresAt } from "../taskExpiry.js";

interface PgTaskRow {
  task_id: string;
  tool: string;
  created_at: string;
  ttl_ms: string;
  cancelled: boolean;
}

// bigint comes back as a string from pg; a ttl is at most days, well within a double.
const toRecord = (row: PgTaskRow): TaskRecord => ({ taskId: row.task_id, tool: row.tool, createdAt: row.created_at, ttlMs: Number(row.ttl_ms), cancelled: row.cancelled });

/** The MCP tasks every front-end of a studio sees: a client may ask any of them for a task another one opened. */
export class PgTaskIndex implements TaskIndex {
  constructor(private readonly pool: pg.Pool) {}

  async add(record: TaskRecord): Promise<void> {
    await this.pool.query(`INSERT INTO tasks (task_id, tool, created_at, ttl_ms, expires_at, cancelled) VALUES ($1, $2, $3, $4, $5, $6)`, [
      record.taskId,
      record.tool,
      record.createdAt,
      record.ttlMs,
      expiresAt(record),
      record.cancelled,
    ]);
  }

  async get(taskId: string, now: Date): Promise<TaskRecord | undefined> {
    const { rows } = await this.pool.query<PgTaskRow>(`SELECT * FROM tasks WHERE task_id = $1 AND expires_at > $2`, [taskId, now.toISOString()]);
    return rows[0] && toRecord(rows[0]);
  }

  async markCancelled(taskId: string): Promise<void> {
    await this.pool.query(`UPDATE tasks SET cancelled = true WHERE task_id = $1`, [taskId]);
  }

  async page(now: Date, limit: number, after?: { createdAt: string; taskId: string }): Promise<TaskRecord[]> {
    const { rows } = after
      ? await this.pool.query<PgTaskRow>(
          `SELECT * FROM tasks WHERE expires_at > $1 AND (created_at, task_id) < ($2, $3) ORDER BY created_at DESC, task_id DESC LIMIT $4`,
          [now.toISOString(), after.createdAt, after.taskId, limit],
        )
      : await this.pool.query<PgTaskRow>(`SELECT * FROM tasks WHERE expires_at > $1 ORDER BY created_at DESC, task_id DESC LIMIT $2`, [now.toISOString(), limit]);
    return rows.map(toRecord);
  }

  async forgetExpired(now: Date): Promise<number> {
    const { rowCount } = await this.pool.query(`DELETE FROM tasks WHERE expires_at <= $1`, [now.toISOString()]);
    return rowCount ?? 0;
  }
}
