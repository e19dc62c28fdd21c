import { open, readFile } from "node:fs/promises";
import { inflateSync } from "node:zlib";

/** What a PNG says about itself: its size and its text chunks (tEXt, zTXt, iTXt). */
export interface PngInfo {
  width: number;
  height: number;
  text: Record<string, string>;
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** Reads the chunks up to the image data; throws when the bytes are not a PNG. */
export function readPngInfo(bytes: Buffer): PngInfo {
  if (bytes.length < 33 || !bytes.subarray(0, 8).equals(SIGNATURE)) throw new Error("not a PNG");
  const info: PngInfo = { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20), text: {} };
  for (let offset = 8; offset + 8 <= bytes.length; ) {
    const length = bytes.readUInt32BE(offset);
    const type = bytes.toString("latin1", offset + 4, offset + 8);
    const body = bytes.subarray(offset + 8, offset + 8 + length);
    offset += 12 + length;
    const split = body.indexOf(0);
    if (split < 0) continue;
    const keyword = body.toString("latin1", 0, split);
    if (type === "tEXt") info.text[keyword] = body.toString("latin1", split + 1);
    else if (type === "zTXt") info.text[keyword] = inflateSync(body.subarray(split + 2)).toString("latin1");
    else if (type === "iTXt") {
      // keyword, compression flag, method, language tag \0, translated keyword \0, UTF-8 text
      const compressed = body[split + 1] === 1;
      const language = body.indexOf(0, split + 3);
      const translated = body.indexOf(0, language + 1);
      const text = body.subarray(translated + 1);
      info.text[keyword] = (compressed ? inflateSync(text) : text).toString("utf8");
    } else if (type === "IEND") break;
  }
  return info;
}

/** The size a PNG file declares in its header, or null when the file does not start as a PNG does. */
export async function pngFileSize(file: string): Promise<{ width: number; height: number } | null> {
  const handle = await open(file, "r");
  try {
    const head = Buffer.alloc(24);
    const { bytesRead } = await handle.read(head, 0, 24, 0);
    if (bytesRead < 24 || !head.subarray(0, 8).equals(SIGNATURE) || head.toString("latin1", 12, 16) !== "IHDR") return null;
    return { width: head.readUInt32BE(16), height: head.readUInt32BE(20) };
  } finally {
    await handle.close();
  }
}

/**
 * Walks a whole PNG file: signature, IHDR first, every chunk inside the file with a matching CRC, image data, and
 * IEND last. An engine that died mid-write, a disk that lost a block or a stray byte shows here, before anything
 * is stored. Returns the declared size, or what is wrong.
 */
export async function checkPngFile(file: string): Promise<{ width: number; height: number } | { problem: string }> {
  const bytes = await readFile(file);
  if (bytes.length < 8 || !bytes.subarray(0, 8).equals(SIGNATURE)) return { problem: "it does not start as a PNG does" };
  let sawImageData = false;
  for (let offset = 8, index = 0; ; index++) {
    if (offset + 12 > bytes.length) return { problem: `it ends after ${bytes.length} bytes, inside its chunk list (no IEND): cut short` };
    const length = bytes.readUInt32BE(offset);
    const type = bytes.toString("latin1", offset + 4, offset + 8);
    if (index === 0 && type !== "IHDR") return { problem: `its first chunk is ${JSON.stringify(type)}, not IHDR` };
    const end = offset + 8 + length;
    if (end + 4 > bytes.length) return { problem: `its ${type} chunk runs past the end of the file (${bytes.length} bytes): cut short` };
    if (crc32(bytes.subarray(offset + 4, end)) !== bytes.readUInt32BE(end)) return { problem: `its ${type} chunk at byte ${offset} fails its CRC: damaged` };
    if (type === "IDAT") sawImageData = true;
    if (type === "IEND") {
      if (!sawImageData) return { problem: "it has no image data (IDAT)" };
      return { width: bytes.readUInt32BE(16), height: bytes.readUInt32BE(20) };
    }
    offset = end + 4;
  }
}

/** PNG's CRC-32 (ISO 3309), over a chunk's type and data. */
function crc32(bytes: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of bytes) crc = CRC_TABLE[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
