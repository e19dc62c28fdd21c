import { ProtocolError, ProtocolErrorCode, type CallToolResult } from "@modelcontextprotocol/server";
import { KittyError } from "../../core/errors.js";
import { isTerminal, type Job } from "../../queue/job.js";
import type { TaskIndex, TaskRecord } from "../../queue/ports.js";
import { editImage } from "../tools/editImage.js";
import { generateImage } from "../tools/generateImage.js";
import { jobStatus } from "../tools/jobStatus.js";
import { toolResult, type AnyTool, type ToolDeps } from "../tools/toolKit.js";
import { upscaleImage } from "../tools/upscaleImage.js";

/** The tools that queue a job, and so may run as a task; every other tool answers at once. */
export const TASK_TOOLS: ReadonlyMap<string, AnyTool> = new Map([generateImage, upscaleImage, editImage].map((tool) => [tool.name, tool]));

/** How long a client may ask a task to be kept: a minute to a week. Unasked, config.tasks.ttlMs. */
export const TASK_TTL_RANGE_MS = { min: 60_000, max: 7 * 24 * 3600_000 } as const;

/** How often a client should poll a task that is still working: a step of a small model takes about this long. */
const POLL_INTERVAL_MS = 1000;

export type TaskStatus = "working" | "completed" | "failed" | "cancelled";

/** A task as both protocol eras report it; each era's wire names the fields its own way. */
export interface TaskSnapshot {
  taskId: string;
  status: TaskStatus;
  statusMessage: string;
  createdAt: string;
  lastUpdatedAt: string;
  ttlMs: number;
  pollIntervalMs?: number;
}

/** A task and its job, as they stand. */
export interface OpenTask {
  record: TaskRecord;
  job: Job;
}

/**
 * The tasks clients open, era-neutral: a task is its job (the task id is the job id), so it lives as long as the
 * queue does, across reconnects, restarts and front-ends. Its state is read from the job each time:
 *
 *   job queued / running ──► working
 *   job done             ──► completed (result: job_status's answer, with previews)
 *   job failed           ──► completed (result: job_status's answer, isError; `failed` is for protocol errors)
 *   job cancelled        ──► cancelled, and so is a task a 2025 client cancelled while its job ends its step
 */
export class TaskBook {
  constructor(
    private readonly deps: ToolDeps,
    private readonly tasks: TaskIndex,
    private readonly defaultTtlMs: number,
  ) {}

  /** Records the task for a job a tool just queued; a client's asked ttl is kept within TASK_TTL_RANGE_MS. */
  async open(jobId: string, tool: string, askedTtlMs?: number): Promise<OpenTask> {
    const now = new Date();
    // Forgetting happens as tasks are made, so the table holds about a ttl's worth of them and never needs a timer.
    const forgotten = await this.tasks.forgetExpired(now);
    if (forgotten) this.deps.log.debug({ forgotten }, "forgot expired tasks (their jobs and images stay)");
    const ttlMs = askedTtlMs === undefined ? this.defaultTtlMs : Math.min(TASK_TTL_RANGE_MS.max, Math.max(TASK_TTL_RANGE_MS.min, Math.round(askedTtlMs)));
    const record: TaskRecord = { taskId: jobId, tool, createdAt: now.toISOString(), ttlMs, cancelled: false };
    await this.tasks.add(record);
    return { record, job: await this.deps.queue.get(jobId) };
  }

  /** The task, or -32602 naming why there is none (never opened, or expired: its job may still be asked for). */
  async find(taskId: unknown): Promise<OpenTask> {
    if (typeof taskId !== "string" || taskId === "") throw new ProtocolError(ProtocolErrorCode.InvalidParams, "taskId must be the task id a tools/call returned");
    const record = await this.tasks.get(taskId, new Date());
    const job = record && (await this.deps.queue.find(taskId));
    if (!record || !job) {
      throw new ProtocolError(
        ProtocolErrorCode.InvalidParams,
        `no task '${taskId}': it was never opened here, or it expired (a task is kept ${hours(this.defaultTtlMs)} unless asked otherwise). ` +
          `Its job and images are kept: job_status {"jobId":"${taskId}"} still answers for a job.`,
      );
    }
    return { record, job };
  }

  async snapshot({ record, job }: OpenTask): Promise<TaskSnapshot> {
    const status: TaskStatus = record.cancelled || job.state === "cancelled" ? "cancelled" : isTerminal(job.state) ? "completed" : "working";
    return {
      taskId: record.taskId,
      status,
      statusMessage: await this.statusMessage(record, job),
      createdAt: record.createdAt,
      lastUpdatedAt: job.finishedAt ?? job.startedAt ?? record.createdAt,
      ttlMs: record.ttlMs,
      ...(status === "working" && { pollIntervalMs: POLL_INTERVAL_MS }),
    };
  }

  /** A completed task's result: what job_status says of the ended job, with its previews (the task's result carries the image). */
  async result({ job }: OpenTask): Promise<CallToolResult> {
    const answer = toolResult(await jobStatus.handler({ jobId: job.id, preview: true }, this.deps, { progress() {} }));
    return job.state === "failed" ? { ...answer, isError: true } : answer;
  }

  /** Cancels the task's job; `atOnce` (2025-11-25) also ends the task now, even while the job finishes its step. */
  async cancel(taskId: unknown, { atOnce }: { atOnce: boolean }): Promise<OpenTask> {
    const task = await this.find(taskId);
    if (task.record.cancelled || isTerminal(task.job.state)) {
      const { status } = await this.snapshot(task);
      throw new ProtocolError(ProtocolErrorCode.InvalidParams, `task '${task.record.taskId}' is already ${status}; only a working task can be cancelled`);
    }
    try {
      await this.deps.queue.cancel(task.record.taskId);
    } catch (error) {
      // The job ended between the look and the cancel.
      if (error instanceof KittyError) throw new ProtocolError(ProtocolErrorCode.InvalidParams, `task '${task.record.taskId}': ${error.message}`);
      throw error;
    }
    if (atOnce) await this.tasks.markCancelled(task.record.taskId);
    this.deps.log.info({ taskId: task.record.taskId }, "task cancelled");
    return this.find(task.record.taskId);
  }

  /** Waits for the task to end (2025-11-25 tasks/result blocks), in bounded waits so a cancel or abort is seen. */
  async untilEnded(task: OpenTask, signal: AbortSignal): Promise<OpenTask> {
    let current = task;
    while (!current.record.cancelled && !isTerminal(current.job.state)) {
      signal.throwIfAborted();
      await this.deps.queue.waitForEnd(current.job.id, 5_000);
      current = await this.find(current.record.taskId);
    }
    return current;
  }

  /** Unexpired tasks, newest first, a page at a time (2025-11-25 tasks/list). */
  async page(cursor: unknown, limit = 50): Promise<{ tasks: OpenTask[]; nextCursor?: string }> {
    const after = decodeCursor(cursor);
    const records = await this.tasks.page(new Date(), limit + 1, after);
    const shown = records.slice(0, limit);
    const tasks: OpenTask[] = [];
    for (const record of shown) {
      const job = await this.deps.queue.find(record.taskId);
      if (job) tasks.push({ record, job });
    }
    const last = shown.at(-1);
    return { tasks, ...(records.length > limit && last && { nextCursor: Buffer.from(JSON.stringify([last.createdAt, last.taskId])).toString("base64url") }) };
  }

  private async statusMessage(record: TaskRecord, job: Job): Promise<string> {
    if (record.cancelled && !isTerminal(job.state)) return `cancelled; job ${job.id} stops at its next step`;
    switch (job.state) {
      case "queued": {
        const reason = await this.deps.queue.waitingReason(job);
        return `queued at position ${await this.deps.queue.position(job)}${reason ? ` (waiting: ${reason.split("\n")[0]})` : ""}`;
      }
      case "running": {
        const { step, totalSteps } = job.progress ?? { step: 0, totalSteps: job.request.steps * (job.request.count ?? 1) };
        return job.cancelRequested ? `stopping at its next step (step ${step}/${totalSteps})` : `step ${step}/${totalSteps}`;
      }
      case "done":
        return `done: job ${job.id}`;
      case "failed":
        return `job ${job.id} failed (${job.error?.code ?? "internal_error"})`;
      case "cancelled":
        return `job ${job.id} was cancelled`;
    }
  }
}

function hours(ms: number): string {
  const h = ms / 3600_000;
  return h === 1 ? "1 hour" : `${h} hours`;
}

function decodeCursor(cursor: unknown): { createdAt: string; taskId: string } | undefined {
  if (cursor === undefined) return undefined;
  try {
    const [createdAt, taskId] = JSON.parse(Buffer.from(String(cursor), "base64url").toString("utf8")) as unknown[];
    if (typeof createdAt === "string" && typeof taskId === "string") return { createdAt, taskId };
  } catch {
    // answered below
  }
  throw new ProtocolError(ProtocolErrorCode.InvalidParams, "cursor is not one a tasks/list page returned");
}
