import { createServer, type Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { dropWhenStalled } from "../../src/http/stallGuard.js";
import { waitUntil } from "../helpers/waitUntil.js";

/** A server streaming 64 KB chunks, with backpressure as the MCP adapter writes, for as long as the client reads. */
function streamingServer(stallMs: number) {
  const state = { written: 0, dropped: false, closed: false };
  const server = createServer((_request, response) => {
    dropWhenStalled(response, stallMs, () => (state.dropped = true));
    response.writeHead(200, { "content-type": "text/event-stream" });
    const chunk = Buffer.alloc(64 * 1024, "x");
    const pump = () => {
      while (!response.destroyed && state.written < 256 * 1024 * 1024) {
        state.written += chunk.length;
        if (!response.write(chunk)) return void response.once("drain", pump);
      }
    };
    response.on("close", () => (state.closed = true));
    pump();
  });
  return { server, state };
}

describe("dropping an HTTP stream whose client stopped reading", () => {
  let server: Server | null = null;
  let client: Socket | null = null;
  afterEach(async () => {
    client?.destroy();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  });

  it("drops a client that reads nothing, once its buffers are full, having queued only what they hold", async () => {
    const made = streamingServer(300);
    server = made.server;
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", () => resolve()));
    client = connect((server.address() as AddressInfo).port, "127.0.0.1");
    client.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    client.pause();
    await waitUntil("the server drops the stream", () => made.state.closed, { timeoutMs: 10_000 });
    expect(made.state.dropped).toBe(true);
    // What the kernel's buffers on both ends took, plus one chunk: nowhere near the 256 MB the server would have sent.
    expect(made.state.written).toBeLessThan(64 * 1024 * 1024);
  });

  it("keeps a slow client that goes on reading", async () => {
    // TCP's window opens in steps: here the longest wait between two drains was about 400 ms.
    const made = streamingServer(2_000);
    server = made.server;
    await new Promise<void>((resolve) => server!.listen(0, "127.0.0.1", () => resolve()));
    client = connect((server.address() as AddressInfo).port, "127.0.0.1");
    client.write("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    let read = 0;
    // Takes what has arrived every 50 ms: slower than the server writes, so its writes are refused again and again.
    client.pause();
    const reader = setInterval(() => {
      let chunk: Buffer | null;
      while ((chunk = client!.read() as Buffer | null) !== null) read += chunk.length;
    }, 50);
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    clearInterval(reader);
    expect(made.state.dropped).toBe(false);
    expect(made.state.closed).toBe(false);
    expect(read).toBeGreaterThan(0);
  });
});
