import { createHash } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Socket } from "node:net";

/**
 * The server end of a websocket (RFC 6455) for stand-ins of other apps: the handshake, text frames out, and the
 * client's masked text frames in (one frame per message, as browsers and Node's WebSocket send short ones).
 */
export interface MiniWebSocket {
  send(text: string): void;
  close(): void;
}

function frame(text: string): Buffer {
  const payload = Buffer.from(text, "utf8");
  let head: Buffer;
  if (payload.length < 126) head = Buffer.from([0x81, payload.length]);
  else if (payload.length < 65536) head = Buffer.from([0x81, 126, payload.length >> 8, payload.length & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = 0x81;
    head[1] = 127;
    head.writeBigUInt64BE(BigInt(payload.length), 2);
  }
  return Buffer.concat([head, payload]);
}

/** Reads whole client frames from `buffer`; returns the texts and what is left over. */
function readFrames(buffer: Buffer): { texts: string[]; closed: boolean; rest: Buffer } {
  const texts: string[] = [];
  let closed = false;
  let offset = 0;
  while (buffer.length - offset >= 6) {
    const opcode = buffer[offset]! & 0x0f;
    let length = buffer[offset + 1]! & 0x7f;
    let at = offset + 2;
    if (length === 126) {
      length = buffer.readUInt16BE(at);
      at += 2;
    } else if (length === 127) {
      length = Number(buffer.readBigUInt64BE(at));
      at += 8;
    }
    if (buffer.length < at + 4 + length) break;
    const mask = buffer.subarray(at, at + 4);
    const payload = Buffer.from(buffer.subarray(at + 4, at + 4 + length).map((byte, index) => byte ^ mask[index % 4]!));
    if (opcode === 0x1) texts.push(payload.toString("utf8"));
    if (opcode === 0x8) closed = true;
    offset = at + 4 + length;
  }
  return { texts, closed, rest: buffer.subarray(offset) };
}

export function acceptWebSocket(request: IncomingMessage, socket: Socket, onText: (text: string) => void = () => undefined): MiniWebSocket {
  const accept = createHash("sha1").update(`${request.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest("base64");
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let pending: Buffer = Buffer.alloc(0);
  socket.on("data", (chunk: Buffer) => {
    const { texts, closed, rest } = readFrames(Buffer.concat([pending, chunk]));
    pending = rest;
    for (const text of texts) onText(text);
    // The client said goodbye: answer by closing, so no half-open socket keeps the stand-in's server from stopping.
    if (closed) socket.end(Buffer.from([0x88, 0]));
  });
  socket.on("error", () => undefined);
  return {
    send: (text) => {
      if (!socket.destroyed) socket.write(frame(text));
    },
    close: () => socket.destroy(),
  };
}
