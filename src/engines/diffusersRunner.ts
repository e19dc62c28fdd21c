import { execa, type ResultPromise } from "execa";
import { createInterface } from "node:readline";
import type { Logger } from "../core/log.js";
import type { GenerationJob } from "./engine.js";
import { EngineJobError } from "./engine.js";
import { runnerFix } from "./runnerFixes.js";
import { runnerEventSchema, type DoneEvent, type ReadyEvent, type RunnerRequest } from "./runnerProtocol.js";
import { seconds } from "./seconds.js";

export interface RunnerOptions {
  python: string;
  packageDir: string;
  env: Record<string, string>;
  readyTimeoutMs: number;
}

/** How long a job may take before its runner counts as hung, and how that figure was reached (for the message). */
export interface JobDeadline {
  ms: number;
  why: string;
}

interface PendingJob {
  job: GenerationJob;
  resolve(done: DoneEvent): void;
  reject(error: EngineJobError): void;
}

const STDERR_TAIL_LINES = 30;

/** One live `python -m diffusers_runner` process: spawn, NDJSON both ways, and what happens when it dies. */
export class RunnerProcess {
  readonly ready: Promise<ReadyEvent>;
  readonly exited: Promise<void>;
  private readonly child: ResultPromise<{ stdin: "pipe"; stdout: "pipe"; stderr: "pipe"; buffer: false; reject: false }>;
  private readonly pending = new Map<string, PendingJob>();
  private readonly stderrTail: string[] = [];
  private alive = true;

  constructor(
    private readonly options: RunnerOptions,
    private readonly log: Logger,
  ) {
    this.child = execa(options.python, ["-m", "diffusers_runner"], {
      cwd: options.packageDir,
      env: { ...options.env, PYTHONPATH: options.packageDir, PYTHONUNBUFFERED: "1" },
      extendEnv: false,
      stdin: "pipe",
      stdout: "pipe",
      stderr: "pipe",
      buffer: false,
      reject: false,
    });

    let markReady: (event: ReadyEvent) => void = () => {};
    let failReady: (error: Error) => void = () => {};
    this.ready = new Promise<ReadyEvent>((resolve, reject) => {
      markReady = resolve;
      failReady = reject;
    });
    this.ready.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
    const readyTimer = setTimeout(() => {
      failReady(new EngineJobError("engine_unavailable", `the diffusers runner did not become ready in ${options.readyTimeoutMs / 1000}s${this.stderrSummary()}${this.fix()}`, true));
      this.kill();
    }, options.readyTimeoutMs);

    createInterface({ input: this.child.stdout }).on("line", (line) => {
      const event = this.parse(line);
      if (!event) return;
      if (event.type === "ready") {
        clearTimeout(readyTimer);
        markReady(event);
      } else if (event.type === "progress") {
        this.pending.get(event.jobId)?.job.onProgress({ step: event.step, totalSteps: event.totalSteps });
      } else if (event.type === "done") {
        this.settle(event.jobId, (pending) => pending.resolve(event));
      } else if (event.jobId) {
        const error = new EngineJobError(event.code, event.message);
        this.settle(event.jobId, (pending) => pending.reject(error));
      } else {
        this.log.warn({ runnerError: event }, "runner rejected a request");
      }
    });
    createInterface({ input: this.child.stderr }).on("line", (line) => {
      this.stderrTail.push(line);
      if (this.stderrTail.length > STDERR_TAIL_LINES) this.stderrTail.shift();
      this.log.debug({ runner: line }, "runner stderr");
    });

    let isReady = false;
    void this.ready.then(() => (isReady = true), () => undefined);
    this.exited = this.child.then((result) => {
      this.alive = false;
      clearTimeout(readyTimer);
      const how = result.signal ? `signal ${result.signal}` : `exit code ${result.exitCode}`;
      // Dying before "ready" is a broken install (venv, device, imports), not a bad job: jobs wait for a fix.
      failReady(new EngineJobError("engine_unavailable", `the diffusers runner exited before it was ready (${how})${this.stderrSummary()}${this.fix()}`, true));
      const error = new EngineJobError("runner_crashed", `the diffusers runner stopped (${how})${isReady ? "" : " before it was ready"}${this.stderrSummary()}`, true);
      for (const [jobId, pending] of this.pending) {
        this.pending.delete(jobId);
        pending.reject(error);
      }
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get isAlive(): boolean {
    return this.alive;
  }

  /**
   * Runs one job. Past its deadline the runner counts as hung (alive but silent: a driver stuck in a kernel, a
   * deadlock): the job is rejected as retryable and the process killed, so the next job gets a fresh one.
   */
  generate(request: RunnerRequest & { type: "generate" }, job: GenerationJob, deadline: JobDeadline): Promise<DoneEvent> {
    if (!this.alive) return Promise.reject(new EngineJobError("runner_crashed", "the diffusers runner is not running", true));
    return new Promise<DoneEvent>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.log.error({ jobId: job.jobId, runnerPid: this.pid, deadlineMs: deadline.ms }, "runner hung: no answer by the job's deadline; killing it");
        // Not alive from now on: the next job must not be sent to a process that is only waiting for its SIGKILL.
        this.alive = false;
        this.settle(job.jobId, (pending) =>
          pending.reject(new EngineJobError("runner_hung", `the diffusers runner gave no answer within the job's deadline of ${seconds(deadline.ms)}s (${deadline.why}), so it was killed and a new one started`, true)),
        );
        this.kill();
      }, deadline.ms);
      const settled = <T>(action: (value: T) => void) => (value: T) => {
        clearTimeout(timer);
        action(value);
      };
      this.pending.set(job.jobId, { job, resolve: settled(resolve), reject: settled(reject) });
      this.send(request);
    });
  }

  cancel(jobId: string): void {
    if (this.alive) this.send({ type: "cancel", jobId });
  }

  /** Asks the runner to stop (it abandons the current job at the next step), then kills it if it lingers. */
  async stop(graceMs = 5000): Promise<void> {
    if (!this.alive) return;
    this.send({ type: "shutdown" });
    this.child.stdin.end();
    const timer = setTimeout(() => this.kill(), graceMs);
    await this.exited;
    clearTimeout(timer);
  }

  kill(): void {
    this.child.kill("SIGKILL");
  }

  private send(request: RunnerRequest): void {
    this.child.stdin.write(`${JSON.stringify(request)}\n`);
  }

  private settle(jobId: string, action: (pending: PendingJob) => void): void {
    const pending = this.pending.get(jobId);
    if (!pending) return;
    this.pending.delete(jobId);
    action(pending);
  }

  private parse(line: string) {
    try {
      const parsed = runnerEventSchema.safeParse(JSON.parse(line));
      if (parsed.success) return parsed.data;
      this.log.error({ line, issues: parsed.error.issues }, "runner sent a message outside the protocol");
    } catch {
      this.log.error({ line }, "runner wrote a non-JSON line to stdout");
    }
    return undefined;
  }

  private fix(): string {
    return `\nFix: ${runnerFix(this.options.python, this.stderrTail.join("\n"))}`;
  }

  private stderrSummary(): string {
    const tail = this.stderrTail.filter((line) => line.trim() !== "").slice(-8).join("\n");
    return tail ? `; its last stderr lines:\n${tail}` : "";
  }
}
