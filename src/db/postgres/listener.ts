import pg from "pg";
import { messageOf } from "../../core/errors.js";
import type { Logger } from "../../core/log.js";
import type { JobEventName } from "../../queue/jobEvents.js";
import { JOBS_CHANNEL } from "./jobs.js";
import { GrowingDelay, pause, type Backoff } from "../../queue/retry.js";

const EVENT_NAMES: readonly JobEventName[] = ["enqueued", "progress", "ended", "cancelRequested"];

export interface PgJobListenerHandlers {
  /** A change any process made: a worker wakes on `enqueued`, checks `cancelRequested`, waiters report `progress`/`ended`. */
  onEvent(name: JobEventName, jobId: string): void;
  /**
   * The channel was down (Postgres restarted, the network dropped) and is back: notifications sent meanwhile are
   * lost, so whoever waits on events must read the rows again.
   */
  onReconnect(): void;
}

/**
 * One connection that LISTENs on the jobs channel for the changes other hosts make, and comes back by itself:
 * after a drop it reconnects with backoff, says so (onReconnect), and goes on. No tight polling of the jobs table.
 */
export class PgJobListener {
  private client: pg.Client | null = null;
  private readonly stopping = new AbortController();
  private loop: Promise<void> | null = null;
  private connected: (() => void) | null = null;

  constructor(
    private readonly connectionString: string,
    private readonly handlers: PgJobListenerHandlers,
    private readonly backoff: Backoff,
    private readonly log: Logger,
  ) {}

  /** Resolves once the first LISTEN is in place (retrying until it is, or until stop()). */
  start(): Promise<void> {
    const first = new Promise<void>((resolve) => (this.connected = resolve));
    this.loop ??= this.run();
    return first;
  }

  async stop(): Promise<void> {
    this.stopping.abort();
    this.connected?.(); // a start() still waiting for its first connection returns
    await this.client?.end().catch(() => undefined);
    await this.loop;
  }

  private get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  private async run(): Promise<void> {
    const delay = new GrowingDelay(this.backoff);
    let droppedBefore = false;
    while (!this.stopped) {
      let failed: unknown;
      const client = new pg.Client({ connectionString: this.connectionString, connectionTimeoutMillis: 5_000 });
      const dropped = new Promise<unknown>((resolve) => {
        client.on("error", resolve);
        client.on("end", () => resolve(new Error("connection ended")));
      });
      try {
        await client.connect();
        client.on("notification", (message) => this.deliver(message.payload));
        await client.query(`LISTEN ${JOBS_CHANNEL}`);
        this.client = client;
        delay.reset();
        if (droppedBefore) {
          this.log.info("job channel back; re-reading job states");
          this.handlers.onReconnect();
        }
        this.connected?.();
        this.connected = null;
        const reason = await dropped;
        if (this.stopped) break;
        this.log.warn({ error: messageOf(reason) }, "lost the job channel; reconnecting");
      } catch (error) {
        if (this.stopped) break;
        failed = error;
      } finally {
        this.client = null;
        await client.end().catch(() => undefined);
      }
      droppedBefore = true;
      const wait = delay.next();
      if (failed !== undefined) this.log.warn({ error: messageOf(failed), retryInMs: wait }, "cannot listen on the job channel yet; will retry");
      await pause(wait, this.stopping.signal);
    }
  }

  private deliver(payload: string | undefined): void {
    const [name, jobId] = (payload ?? "").split(" ");
    if (!jobId || !EVENT_NAMES.includes(name as JobEventName)) {
      this.log.warn({ payload }, "ignored a message on the job channel outside its format");
      return;
    }
    try {
      this.handlers.onEvent(name as JobEventName, jobId);
    } catch (error) {
      this.log.warn({ error: messageOf(error) }, "a job channel handler failed");
    }
  }
}
