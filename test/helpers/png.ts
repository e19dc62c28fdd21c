import { crc32, deflateSync, inflateSync } from "node:zlib";

export interface DecodedPng {
  width: number;
  height: number;
  /** Decompressed image data (filtered scanlines): equal bytes mean equal pixels for the same encoder settings. */
  pixels: Buffer;
  text: Record<string, string>;
}

/** Reads the chunks of a PNG: enough to check its size and compare pixels without an image library. */
export function readPng(bytes: Buffer): DecodedPng {
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  if (!bytes.subarray(0, 8).equals(signature)) throw new Error("not a PNG: bad signature");
  let offset = 8;
  let width = 0;
  let height = 0;
  const data: Buffer[] = [];
  const text: Record<string, string> = {};
  while (offset < bytes.length) {
    const length = bytes.readUInt32BE(offset);
    const type = bytes.toString("latin1", offset + 4, offset + 8);
    const body = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === "IHDR") {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
    } else if (type === "IDAT") {
      data.push(body);
    } else if (type === "tEXt") {
      const split = body.indexOf(0);
      text[body.toString("latin1", 0, split)] = body.toString("latin1", split + 1);
    }
    offset += 12 + length;
  }
  return { width, height, pixels: inflateSync(Buffer.concat(data)), text };
}

/** A valid 8-bit greyscale PNG of the given size (mid-grey, or `grey(x, y)`) with text chunks, for storage and reindex tests. */
export function makePng(width: number, height: number, text: Record<string, string> = {}, grey: (x: number, y: number) => number = () => 0x80): Buffer {
  const chunk = (type: string, body: Buffer) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(body.length, 0);
    head.write(type, 4, "latin1");
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), body])), 0);
    return Buffer.concat([head, body, crc]);
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 0, 0, 0, 0], 8); // 8-bit greyscale, no interlace
  const rows = Buffer.alloc((width + 1) * height);
  for (let row = 0; row < height; row++) {
    rows[row * (width + 1)] = 0; // filter byte: none
    for (let x = 0; x < width; x++) rows[row * (width + 1) + 1 + x] = grey(x, row);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk("IHDR", header),
    ...Object.entries(text).map(([key, value]) => chunk("tEXt", Buffer.from(`${key}\0${value}`, "latin1"))),
    chunk("IDAT", deflateSync(rows)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

/** An inpaint mask: black (kept) with a white (repainted) square. */
export function makeMaskPng(width: number, height: number, square: { x: number; y: number; size: number }): Buffer {
  const inside = (at: number, from: number) => at >= from && at < from + square.size;
  return makePng(width, height, {}, (x, y) => (inside(x, square.x) && inside(y, square.y) ? 255 : 0));
}
