/** Backoff bounds: the first wait, doubled after each failure up to the last. */
export interface Backoff {
  first: number;
  max: number;
}

interface RetryOptions {
  backoff: Backoff;
  /** Ends the wait between tries early; once aborted, the loop throws its reason instead of trying again. */
  signal: AbortSignal;
  /** Turns an error into the one to throw instead of retrying; undefined means try again. */
  giveUp(error: unknown): unknown;
  onRetry(error: unknown, retryInMs: number): void;
}

/** The wait between tries: `first`, doubled after each failure up to `max`, and `first` again after a success. */
export class GrowingDelay {
  private current: number;

  constructor(private readonly bounds: Backoff) {
    this.current = bounds.first;
  }

  /** The wait before the next try; the one after it will be twice as long, up to the bound. */
  next(): number {
    const now = this.current;
    this.current = Math.min(now * 2, this.bounds.max);
    return now;
  }

  reset(): void {
    this.current = this.bounds.first;
  }
}

/** Sleeps `ms`, or less when `signal` aborts first. Never rejects. */
export function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Runs `operation` until it succeeds, backing off between tries, until `giveUp` or the signal says stop. */
export async function retryWithBackoff<T>(operation: () => Promise<T> | T, { backoff, signal, giveUp, onRetry }: RetryOptions): Promise<T> {
  const delay = new GrowingDelay(backoff);
  for (;;) {
    try {
      return await operation();
    } catch (error) {
      const final = giveUp(error);
      if (final !== undefined) throw final;
      if (signal.aborted) throw signal.reason;
      const wait = delay.next();
      onRetry(error, wait);
      await pause(wait, signal);
    }
  }
}
