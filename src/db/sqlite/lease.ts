import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import type { QueueLease } from "../../queue/ports.js";
import type { Db } from "./database.js";

interface LeaseRow {
  owner: string;
  pid: number;
  host: string;
  heartbeat_at: number;
  notice: string | null;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Who may run jobs from this data dir. Claude Desktop and the KITTY agent each start their own stdio server on
 * the same queue; without a lease both would drive the one GPU at once and each would "recover" the other's
 * running job. The holder heartbeats; a holder that stopped heartbeating, or whose process is gone, is replaced.
 * A holder's pid is checked only from the same host; one elsewhere (another container) is judged by heartbeat.
 * Containers on one host that share a hostname but not a pid namespace would still misjudge each other.
 */
export class SqliteLease implements QueueLease {
  readonly owner = randomUUID();
  private readonly statements;

  constructor(
    private readonly db: Db,
    // Long enough that a laptop waking from sleep does not hand the queue over while its holder lives on.
    private readonly staleAfterMs = 60_000,
    private readonly pid = process.pid,
    private readonly host = hostname(),
  ) {
    this.statements = {
      read: db.prepare(`SELECT owner, pid, host, heartbeat_at, notice FROM worker_lease WHERE id = 1`),
      notice: db.prepare(`UPDATE worker_lease SET notice = ? WHERE id = 1 AND owner = ?`),
      insert: db.prepare(`INSERT INTO worker_lease (id, owner, pid, host, heartbeat_at) VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
      takeOver: db.prepare(`UPDATE worker_lease SET owner = ?, pid = ?, host = ?, heartbeat_at = ?, notice = NULL WHERE id = 1 AND owner = ?`),
      heartbeat: db.prepare(`UPDATE worker_lease SET heartbeat_at = ? WHERE id = 1 AND owner = ?`),
      release: db.prepare(`DELETE FROM worker_lease WHERE id = 1 AND owner = ?`),
    };
  }

  async tryAcquire(now = Date.now()): Promise<boolean> {
    return this.db.transaction(() => {
      const row = this.statements.read.get() as LeaseRow | undefined;
      if (!row) return this.statements.insert.run(this.owner, this.pid, this.host, now).changes === 1;
      if (row.owner === this.owner) return this.heartbeatNow(now);
      const holderGone = row.host === this.host && !processAlive(row.pid);
      const abandoned = now - row.heartbeat_at > this.staleAfterMs || holderGone;
      return abandoned && this.statements.takeOver.run(this.owner, this.pid, this.host, now, row.owner).changes === 1;
    }).immediate();
  }

  /** False when the lease was lost (this process stalled past staleAfterMs and another took over). */
  async heartbeat(now = Date.now()): Promise<boolean> {
    return this.heartbeatNow(now);
  }

  private heartbeatNow(now: number): boolean {
    return this.statements.heartbeat.run(now, this.owner).changes === 1;
  }

  /** Who runs the queue, and why it is waiting if it is (read by every server process for job_status). */
  async holder(): Promise<{ pid: number; notice: string | null } | undefined> {
    const row = this.statements.read.get() as LeaseRow | undefined;
    return row && { pid: row.pid, notice: row.notice };
  }

  async setNotice(notice: string | null): Promise<void> {
    this.statements.notice.run(notice, this.owner);
  }

  async release(): Promise<void> {
    this.statements.release.run(this.owner);
  }
}
