import type pg from "pg";
import type { AdvertisedLora, AdvertisedModel, WorkerInfo, WorkerRegistration, WorkerRegistry } from "../../queue/ports.js";

/**
 * The shared queue's GPU workers on Postgres. Each registers with what it has, heartbeats, and writes why its job
 * waits; a running job whose worker went silent is recovered by the job store (PgJobStore.recoverInterrupted).
 */
export class PgWorkerRegistry implements WorkerRegistry {
  constructor(private readonly pool: pg.Pool) {}

  /** A worker announces itself, its models and device (again after a restart: same id, fresh heartbeat). */
  async register(worker: WorkerRegistration): Promise<void> {
    await this.pool.query(
      // A worker starting again starts with no notice: what its last life waited on is not this one's business.
      `INSERT INTO workers (id, host, models, device, model_info, loras, notice, heartbeat_at) VALUES ($1, $2, $3, $4, $5, $6, NULL, now())
       ON CONFLICT (id) DO UPDATE SET host = $2, models = $3, device = $4, model_info = $5, loras = $6, notice = NULL, heartbeat_at = now()`,
      [worker.id, worker.host, [...worker.models], worker.device, JSON.stringify(worker.modelInfo ?? {}), JSON.stringify(worker.loras ?? [])],
    );
  }

  /**
   * `device`, once known, replaces what was registered. False when the worker is no longer registered (it said
   * goodbye, or was removed): it must register again.
   */
  async heartbeat(workerId: string, device: string | null = null): Promise<boolean> {
    const result = await this.pool.query(`UPDATE workers SET heartbeat_at = now(), device = COALESCE($2, device) WHERE id = $1`, [workerId, device]);
    return result.rowCount === 1;
  }

  /** Why this worker's job waits, or null when nothing is in the way; read by job_status on every front-end. */
  async setNotice(workerId: string, notice: string | null): Promise<void> {
    await this.pool.query(`UPDATE workers SET notice = $2 WHERE id = $1 AND notice IS DISTINCT FROM $2`, [workerId, notice]);
  }

  /** A clean shutdown: the worker's row goes, so nobody waits for its heartbeat to go stale. */
  async forget(workerId: string): Promise<void> {
    await this.pool.query(`DELETE FROM workers WHERE id = $1`, [workerId]);
  }

  /** Every registered worker, whether it heartbeat within `staleMs`, and what it runs now. */
  async workers(staleMs: number): Promise<WorkerInfo[]> {
    const { rows } = await this.pool.query<{
      id: string;
      host: string;
      models: string[];
      model_info: Record<string, AdvertisedModel>;
      loras: AdvertisedLora[];
      device: string | null;
      notice: string | null;
      heartbeat_at: Date;
      alive: boolean;
      running_job_id: string | null;
    }>(
      `SELECT w.id, w.host, w.models, w.model_info, w.loras, w.device, w.notice, w.heartbeat_at,
              w.heartbeat_at > now() - make_interval(secs => $1::double precision / 1000) AS alive,
              (SELECT j.id FROM jobs j WHERE j.worker_id = w.id AND j.state = 'running' ORDER BY j.seq LIMIT 1) AS running_job_id
       FROM workers w ORDER BY w.id`,
      [staleMs],
    );
    return rows.map((row) => ({
      id: row.id,
      host: row.host,
      models: row.models,
      modelInfo: row.model_info,
      loras: row.loras,
      device: row.device,
      notice: row.notice,
      heartbeatAt: row.heartbeat_at.toISOString(),
      alive: row.alive,
      runningJobId: row.running_job_id,
    }));
  }
}
