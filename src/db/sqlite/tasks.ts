import type { TaskIndex, TaskRecord } from "../../queue/ports.js";
import { expiresAt } from "../taskExpiry.js";
import type { Db } from "./database.js";

interface TaskRow {
  task_id: string;
  tool: string;
  created_at: string;
  ttl_ms: number;
  cancelled: number;
}

const toRecord = (row: TaskRow): TaskRecord => ({ taskId: row.task_id, tool: row.tool, createdAt: row.created_at, ttlMs: row.ttl_ms, cancelled: row.cancelled === 1 });

/** The MCP tasks of this data dir's processes, in its SQLite file. */
export class SqliteTaskIndex implements TaskIndex {
  private readonly statements;

  constructor(db: Db) {
    this.statements = {
      insert: db.prepare(
        `INSERT INTO tasks (task_id, tool, created_at, ttl_ms, expires_at, cancelled) VALUES (@taskId, @tool, @createdAt, @ttlMs, @expiresAt, @cancelled)`,
      ),
      get: db.prepare(`SELECT * FROM tasks WHERE task_id = ? AND expires_at > ?`),
      cancel: db.prepare(`UPDATE tasks SET cancelled = 1 WHERE task_id = ?`),
      first: db.prepare(`SELECT * FROM tasks WHERE expires_at > ? ORDER BY created_at DESC, task_id DESC LIMIT ?`),
      after: db.prepare(
        `SELECT * FROM tasks WHERE expires_at > ? AND (created_at < @createdAt OR (created_at = @createdAt AND task_id < @taskId)) ORDER BY created_at DESC, task_id DESC LIMIT ?`,
      ),
      forget: db.prepare(`DELETE FROM tasks WHERE expires_at <= ?`),
    };
  }

  async add(record: TaskRecord): Promise<void> {
    this.statements.insert.run({ ...record, expiresAt: expiresAt(record), cancelled: record.cancelled ? 1 : 0 });
  }

  async get(taskId: string, now: Date): Promise<TaskRecord | undefined> {
    const row = this.statements.get.get(taskId, now.toISOString()) as TaskRow | undefined;
    return row && toRecord(row);
  }

  async markCancelled(taskId: string): Promise<void> {
    this.statements.cancel.run(taskId);
  }

  async page(now: Date, limit: number, after?: { createdAt: string; taskId: string }): Promise<TaskRecord[]> {
    const rows = after ? this.statements.after.all(now.toISOString(), after, limit) : this.statements.first.all(now.toISOString(), limit);
    return (rows as TaskRow[]).map(toRecord);
  }

  async forgetExpired(now: Date): Promise<number> {
    return this.statements.forget.run(now.toISOString()).changes;
  }
}
