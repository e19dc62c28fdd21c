import type { DatabaseFacts } from "../../queue/ports.js";
import { openDatabase } from "./database.js";
import { SqliteImageIndex } from "./images.js";
import { SqliteJobStore } from "./jobs.js";
import { SqliteLease } from "./lease.js";
import { MIGRATIONS } from "./migrations.js";
import { SqliteTaskIndex } from "./tasks.js";
import { SqliteUploadIndex } from "./uploads.js";

/** How long a heartbeat, a progress write or a notice waits for another process's lock before it skips a beat. */
const QUICK_BUSY_TIMEOUT_MS = 250;

/** The queue on one machine: one SQLite file (WAL) that every server process on this data dir opens. */
export interface SqliteQueue {
  jobs: SqliteJobStore;
  images: SqliteImageIndex;
  uploads: SqliteUploadIndex;
  tasks: SqliteTaskIndex;
  lease: SqliteLease;
  close(): void;
}

export function openSqliteQueue(file: string): SqliteQueue {
  const db = openDatabase(file);
  // Heartbeats, progress and notices wait briefly for another process's lock, then skip a beat, rather than stop
  // the whole server for the full busy timeout every two seconds while, say, a backup holds the file.
  const quickDb = openDatabase(file, { busyTimeoutMs: QUICK_BUSY_TIMEOUT_MS, migrate: false });
  const images = new SqliteImageIndex(db);
  return {
    jobs: new SqliteJobStore(db, images, quickDb),
    images,
    uploads: new SqliteUploadIndex(db),
    tasks: new SqliteTaskIndex(db),
    lease: new SqliteLease(quickDb),
    close() {
      quickDb.close();
      db.close();
    },
  };
}

/** What `doctor` reports of the file (opening it creates or upgrades it, as the next start would). */
export async function describeSqlite(file: string): Promise<DatabaseFacts> {
  const queue = openSqliteQueue(file);
  try {
    const holder = await queue.lease.holder();
    return {
      location: file,
      schema: "current",
      schemaVersion: MIGRATIONS.length,
      schemaKnown: MIGRATIONS.length,
      counts: await queue.jobs.countByState(),
      images: await queue.images.count(),
      queueHolderPid: holder?.pid ?? null,
      workers: null,
    };
  } finally {
    queue.close();
  }
}
