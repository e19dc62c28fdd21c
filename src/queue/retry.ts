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
  let delay = backoff.first;
  for (;;) {
    try {
      return await operation();
    } catch (error) {
      const final = giveUp(error);
      if (final !== undefined) throw final;
      if (signal.aborted) throw signal.reason;
      onRetry(error, delay);
      await pause(delay, signal);
      delay = Math.min(delay * 2, backoff.max);
    }
  }
}
