import path from "node:path";
import { messageOf } from "../core/errors.js";
import { VERSION } from "../core/version.js";
import type { App } from "../mcp/app.js";
import type { CatalogState } from "../models/catalogWatch.js";

/** How long a storage check answers for, and how long it may take: a supervisor polling every second must not hammer S3. */
const STORAGE_CHECK_TTL_MS = 5_000;
const STORAGE_CHECK_TIMEOUT_MS = 2_000;

export interface HealthReport {
  /** degraded: storage unreachable or the engine stopped; jobs wait rather than fail, but someone should look. */
  status: "ok" | "degraded";
  server: { version: string; pid: number; uptimeSeconds: number; runsJobs: boolean };
  /** state `none`: this process runs no jobs (a Postgres front-end); the workers are below. */
  runner: { state: string; restarts: number; device?: string };
  /** Postgres only: GPU workers heartbeating now, and how many of them are idle. None live is degraded. */
  workers?: { live: number; idle: number };
  storage: { kind: "s3" | "local"; reachable: boolean; checkedAt: string };
  queue: { depth: number; running: number };
  /**
   * The models.yaml served, and the last edit refused (with why) while the one before is still served. A refused
   * edit leaves status "ok": the server works, and a supervisor restarting it would only fail to start on that file.
   */
  models?: { models: number; loadedAt: string; problem: { message: string; at: string } | null };
}

/** What /healthz says of models.yaml: counts and times, and a refused edit's reason with the file named only by its name (no paths here). */
function modelsReport({ source, models, loadedAt, problem }: CatalogState): NonNullable<HealthReport["models"]> {
  const message = problem && source ? problem.message.split(source).join(path.basename(source)) : problem?.message;
  return { models, loadedAt, problem: problem && { message: message!, at: problem.at } };
}

/** /healthz for a supervisor: what this process, its engine and its storage are doing, cheap to ask often. */
export class HealthCheck {
  private storage: { reachable: boolean; at: number } | null = null;
  private checking: Promise<void> | null = null;

  constructor(private readonly app: App) {}

  async report(): Promise<HealthReport> {
    await this.checkStorage();
    const counts = await this.app.queue.counts();
    const runner = this.app.worker ? this.app.engine.health() : { state: "none", restarts: 0 };
    const live = this.app.workers && (await this.app.workers()).filter((worker) => worker.alive);
    const workers = live ? { live: live.length, idle: live.filter((worker) => worker.runningJobId === null).length } : undefined;
    const storage = this.storage!;
    const runnerDown = runner.state === "stopped" || runner.state === "broken";
    return {
      status: storage.reachable && !runnerDown && workers?.live !== 0 ? "ok" : "degraded",
      server: { version: VERSION, pid: process.pid, uptimeSeconds: Math.round(process.uptime()), runsJobs: this.app.worker?.holdsQueue ?? false },
      runner,
      ...(workers && { workers }),
      storage: { kind: this.app.store.kind, reachable: storage.reachable, checkedAt: new Date(storage.at).toISOString() },
      queue: { depth: counts.queued, running: counts.running },
      ...(this.app.catalog && { models: modelsReport(this.app.catalog.current) }),
    };
  }

  private async checkStorage(): Promise<void> {
    if (this.storage && Date.now() - this.storage.at < STORAGE_CHECK_TTL_MS) return;
    this.checking ??= (async () => {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer in ${STORAGE_CHECK_TIMEOUT_MS} ms`)), STORAGE_CHECK_TIMEOUT_MS);
      });
      try {
        await Promise.race([this.app.store.ensureReady(), timeout]);
        this.storage = { reachable: true, at: Date.now() };
      } catch (error) {
        this.storage = { reachable: false, at: Date.now() };
        this.app.log.warn({ error: messageOf(error) }, "health check: storage is not reachable");
      } finally {
        clearTimeout(timer);
        this.checking = null;
      }
    })();
    await this.checking;
  }
}
