import { EventEmitter } from "node:events";

/**
 * What happens to jobs in this process, announced by the JobStore the moment its row changes: the worker wakes
 * on `enqueued` and checks a `cancelRequested` at once, and waiters report each `progress` and return on `ended`. Changes made by other
 * processes on the same data dir are not announced here; their readers poll the row.
 */
export type JobEventName = "enqueued" | "progress" | "ended" | "cancelRequested";

export class JobEvents {
  private readonly emitter = new EventEmitter();

  constructor() {
    // every waiting job_status call listens: there is no sensible cap
    this.emitter.setMaxListeners(0);
  }

  /** Returns the function that stops listening. */
  on(name: JobEventName, listener: (jobId: string) => void): () => void {
    this.emitter.on(name, listener);
    return () => this.emitter.off(name, listener);
  }

  emit(name: JobEventName, jobId: string): void {
    this.emitter.emit(name, jobId);
  }
}
