import type { TaskRecord } from "../queue/ports.js";

/** Where a task stops being kept: created_at plus its ttl, written as created_at is, so both databases compare them as text. */
export const expiresAt = (record: Pick<TaskRecord, "createdAt" | "ttlMs">): string => new Date(Date.parse(record.createdAt) + record.ttlMs).toISOString();
