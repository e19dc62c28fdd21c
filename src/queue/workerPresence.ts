import { messageOf } from "../core/errors.js";
import type { Logger } from "../core/log.js";
import type { Job } from "./job.js";
import type { JobStore, WorkerInfo, WorkerRegistration, WorkerRegistry } from "./ports.js";

export interface PresenceTiming {
  heartbeatMs: number;
  /** A worker silent this long is taken for dead: its running job is recovered by whichever worker beats next. */
  staleMs: number;
}

/**
 * A GPU worker's presence in the shared registry: it registers with its models and device, heartbeats, and on each
 * beat also recovers the jobs of workers gone silent (a host killed mid-job). Every live worker does so; the store
 * settles each row once, so it needs no leader. A beat that fails (Postgres restarting) is logged and the next one
 * tries again; a worker that finds itself unregistered registers again.
 */
export class WorkerPresence {
  private timer: NodeJS.Timeout | null = null;
  private beating: Promise<void> | null = null;

  constructor(
    private readonly jobs: JobStore,
    private readonly registry: WorkerRegistry,
    /** `device`: read at each beat, since the engine learns it only once it has started (cuda, mps, cpu). */
    private worker: Omit<WorkerRegistration, "device"> & { device: () => string | null },
    private readonly timing: PresenceTiming,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.register();
    this.timer = setInterval(() => {
      this.beating ??= this.beat().finally(() => (this.beating = null));
    }, this.timing.heartbeatMs);
  }

  get models(): readonly string[] {
    return this.worker.models;
  }

  /** What this worker has changed (a models.yaml edit, a LoRA dropped in): registered again at once, so front-ends route by it. */
  async advertise(offer: Pick<WorkerRegistration, "models" | "modelInfo" | "loras">): Promise<void> {
    Object.assign(this.worker, offer);
    await this.register();
  }

  private async register(): Promise<void> {
    await this.registry.register({ ...this.worker, device: this.worker.device() });
  }

  /** A clean goodbye: heartbeats stop and the row goes, so nobody waits for it to go stale. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.beating;
    await this.registry.forget(this.worker.id).catch((error: unknown) => this.log.warn({ error: messageOf(error) }, "could not unregister this worker"));
  }

  private async beat(): Promise<void> {
    try {
      if (!(await this.registry.heartbeat(this.worker.id, this.worker.device()))) {
        this.log.warn({ workerId: this.worker.id }, "this worker was no longer registered; registering again");
        await this.register();
      }
      const recovered = await this.jobs.recoverInterrupted(this.timing.staleMs);
      if (recovered.resumed.length || recovered.failed.length) this.log.warn(recovered, "recovered the jobs of workers that went silent");
    } catch (error) {
      this.log.warn({ error: messageOf(error) }, "worker heartbeat failed; will try again");
    }
  }
}

/**
 * Why a job on the shared queue waits, when something is known to stand in its way: a running job waits on what
 * its worker said (storage down, the engine not starting); a queued one on the live workers that could run it, and
 * when there is none, that is the reason.
 */
export async function sharedWaitingReason(registry: WorkerRegistry, staleMs: number, job: Job): Promise<string | null> {
  const workers: WorkerInfo[] = await registry.workers(staleMs);
  if (job.state === "running") return workers.find((worker) => worker.runningJobId === job.id)?.notice ?? null;
  const model = job.request.model.name;
  const serving = workers.filter((worker) => worker.alive && worker.models.includes(model));
  // When every worker that could run it is stuck, say on what.
  if (serving.length > 0) return serving.every((worker) => worker.notice) ? serving[0]!.notice : null;
  const served = [...new Set(workers.filter((worker) => worker.alive).flatMap((worker) => worker.models))];
  return (
    `no live worker has model '${model}'; it waits for one (start \`kitty-images worker\` on a host whose models.yaml has it). ` +
    (served.length ? `Live workers serve: ${served.join(", ")}.` : "No worker is live.")
  );
}
