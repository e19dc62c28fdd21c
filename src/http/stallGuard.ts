import type { ServerResponse } from "node:http";

/** How long a response may sit with its buffer full before its client counts as gone. */
export const STALL_MS = 30_000;

/**
 * Drops a response whose client has stopped reading: once a write is refused (the socket's buffer is full), the
 * client has `stallMs` to take something; otherwise the connection is destroyed and `onDrop` told. What is queued
 * for one client is then bounded by what it can fall behind in that time, never by how long it stays connected.
 * A slow client that keeps reading, however slowly, is never dropped: each drain starts the clock again.
 */
export function dropWhenStalled(response: ServerResponse, stallMs: number, onDrop: () => void): void {
  let timer: NodeJS.Timeout | null = null;
  const stop = () => {
    if (timer) clearTimeout(timer);
    timer = null;
  };
  const write = response.write.bind(response) as (...args: unknown[]) => boolean;
  response.write = ((...args: unknown[]) => {
    const accepted = write(...args);
    if (!accepted && timer === null && !response.destroyed) {
      timer = setTimeout(() => {
        timer = null;
        if (response.writableLength === 0 || response.destroyed) return;
        onDrop();
        response.destroy();
      }, stallMs);
      timer.unref();
    }
    return accepted;
  }) as ServerResponse["write"];
  response.on("drain", stop);
  response.on("close", stop);
}
