import { StdioServerTransport } from "@modelcontextprotocol/server/stdio";
import { Transform, type Readable, type TransformCallback } from "node:stream";
import { MAX_MESSAGE_BYTES } from "../core/limits.js";
import type { Logger } from "../core/log.js";

/** The largest message either door takes: what an HTTP body may hold is what a stdio line may hold. */
export { MAX_MESSAGE_BYTES };

/** How much of a refused line is kept to find its request id: the TS SDK writes `id` last, Python's first. */
const ID_SEARCH_BYTES = 512;

export interface OversizedLine {
  bytes: number;
  /** The request's id when it could be read from the line's start or end; undefined when it could not. */
  id: string | number | undefined;
}

/**
 * Splits stdin into lines and passes on those up to `maxBytes`; a longer one is dropped as it streams (never held
 * whole) and reported to `onOversized`. Chunks are collected and joined once a line ends, so a large message costs
 * one copy, not one per chunk.
 */
export class LineLimiter extends Transform {
  private parts: Buffer[] = [];
  private size = 0;
  /** Inside a line that is over the limit: its bytes go nowhere until its newline. */
  private dropping: { bytes: number; head: Buffer; tail: Buffer } | null = null;

  constructor(
    private readonly maxBytes: number,
    private readonly onOversized: (line: OversizedLine) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    let start = 0;
    while (start < chunk.length) {
      const newline = chunk.indexOf(0x0a, start);
      const end = newline === -1 ? chunk.length : newline;
      this.collect(chunk.subarray(start, end));
      if (newline === -1) break;
      this.endLine();
      start = newline + 1;
    }
    done();
  }

  override _flush(done: TransformCallback): void {
    if (this.size > 0 || this.dropping) this.endLine();
    done();
  }

  private collect(piece: Buffer): void {
    if (piece.length === 0) return;
    if (!this.dropping && this.size + piece.length > this.maxBytes) {
      const held = Buffer.concat(this.parts);
      this.dropping = { bytes: this.size, head: held.subarray(0, ID_SEARCH_BYTES), tail: Buffer.alloc(0) };
      this.parts = [];
      this.size = 0;
    }
    if (this.dropping) {
      const dropping = this.dropping;
      if (dropping.head.length < ID_SEARCH_BYTES) dropping.head = Buffer.concat([dropping.head, piece.subarray(0, ID_SEARCH_BYTES - dropping.head.length)]);
      dropping.tail = Buffer.concat([dropping.tail, piece]).subarray(-ID_SEARCH_BYTES);
      dropping.bytes += piece.length;
      return;
    }
    this.parts.push(piece);
    this.size += piece.length;
  }

  private endLine(): void {
    if (this.dropping) {
      const { bytes, head, tail } = this.dropping;
      this.dropping = null;
      this.onOversized({ bytes, id: requestIdOf(head.toString("utf8"), tail.toString("utf8")) });
      return;
    }
    const line = Buffer.concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    this.push(Buffer.concat([line, Buffer.from("\n")]));
  }
}

const ID = String.raw`"id"\s*:\s*(-?\d+(?:\.\d+)?|"(?:[^"\\]|\\.)*")`;

/** A top-level id: the first key (after "jsonrpc") at the start, or the last key at the end. */
function requestIdOf(head: string, tail: string): string | number | undefined {
  const found = new RegExp(`^\\s*\\{\\s*(?:"jsonrpc"\\s*:\\s*"2\\.0"\\s*,\\s*)?${ID}`).exec(head) ?? new RegExp(`,\\s*${ID}\\s*\\}\\s*$`).exec(tail);
  if (!found) return undefined;
  try {
    return JSON.parse(found[1]!) as string | number;
  } catch {
    return undefined;
  }
}

/**
 * The stdio transport with a bound the client can see: a message over MAX_MESSAGE_BYTES is answered with a
 * JSON-RPC error for its id and the session goes on; one whose id cannot be read ends the session (`onUnanswerable`),
 * so the client sees a closed connection rather than waiting for ever. The SDK's own buffer sits above the bound,
 * so it never closes the transport silently.
 */
export function boundedStdioTransport(log: Logger, onUnanswerable: () => void, stdin: Readable = process.stdin): StdioServerTransport {
  let transport: StdioServerTransport;
  const lines = new LineLimiter(MAX_MESSAGE_BYTES, ({ bytes, id }) => {
    const message = `the message is ${bytes} bytes; this server reads at most ${MAX_MESSAGE_BYTES} bytes a message`;
    log.warn({ bytes, id: id ?? null, limit: MAX_MESSAGE_BYTES }, "refused an MCP message over the size limit");
    if (id === undefined) return onUnanswerable();
    transport
      .send({ jsonrpc: "2.0", id, error: { code: -32600, message } })
      .catch(() => onUnanswerable());
  });
  stdin.pipe(lines);
  transport = new StdioServerTransport(lines, process.stdout, { maxBufferSize: MAX_MESSAGE_BYTES * 2 });
  return transport;
}
