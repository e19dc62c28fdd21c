import { existsSync, readFileSync } from "node:fs";
import { gunzipSync } from "node:zlib";

/**
 * CLIP's BPE, to count a prompt's tokens before it is queued (SD 1.5, SDXL and the other chunked families encode
 * every 75 tokens as one more pass: a prompt of thousands of tokens makes a job many times slower). The same merges
 * the runner builds its tokenizer from (python/diffusers_runner/clip_tokenizer.py), read from the same file; the
 * same lower-casing, word pattern and byte alphabet as OpenAI's simple_tokenizer.py and Hugging Face's CLIPTokenizer.
 */
const MERGES_USED = 49152 - 256 - 2;
const WORDS = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;

function byteAlphabet(): string[] {
  const printable: number[] = [];
  for (let code = 0x21; code <= 0x7e; code++) printable.push(code);
  for (let code = 0xa1; code <= 0xac; code++) printable.push(code);
  for (let code = 0xae; code <= 0xff; code++) printable.push(code);
  const alphabet: string[] = [];
  let extra = 0;
  for (let byte = 0; byte < 256; byte++) alphabet[byte] = String.fromCodePoint(printable.includes(byte) ? byte : 256 + extra++);
  return alphabet;
}

export class ClipTokenCounter {
  private readonly ranks: Map<string, number>;
  private readonly alphabet = byteAlphabet();
  private readonly cache = new Map<string, number>();

  private constructor(merges: string[]) {
    this.ranks = new Map(merges.map((merge, rank) => [merge, rank]));
  }

  /** The counter over a bpe_simple_vocab_16e6.txt.gz, or null when the file is not there (setup not run). */
  static load(vocabGz: string): ClipTokenCounter | null {
    if (!existsSync(vocabGz)) return null;
    const lines = gunzipSync(readFileSync(vocabGz)).toString("utf8").split("\n");
    return new ClipTokenCounter(lines.slice(1, MERGES_USED + 1));
  }

  /** Tokens of `text` as the encoder sees it, without the start and end tokens. */
  count(text: string): number {
    let total = 0;
    const cleaned = text.replace(/\s+/g, " ").trim().toLowerCase();
    for (const [word] of cleaned.matchAll(WORDS)) total += this.wordTokens(word);
    return total;
  }

  private wordTokens(word: string): number {
    const known = this.cache.get(word);
    if (known !== undefined) return known;
    const symbols = [...Buffer.from(word, "utf8")].map((byte) => this.alphabet[byte]!);
    symbols[symbols.length - 1] += "</w>";
    // Merge the best-ranked adjacent pair until none is in the table.
    for (;;) {
      let best = -1;
      let bestRank = Number.POSITIVE_INFINITY;
      for (let at = 0; at < symbols.length - 1; at++) {
        const rank = this.ranks.get(`${symbols[at]} ${symbols[at + 1]}`);
        if (rank !== undefined && rank < bestRank) [best, bestRank] = [at, rank];
      }
      if (best < 0) break;
      const pair = `${symbols[best]} ${symbols[best + 1]}`;
      // Every occurrence of the pair merges in one pass, left to right, as the reference does.
      for (let at = 0; at < symbols.length - 1; at++) {
        if (`${symbols[at]} ${symbols[at + 1]}` === pair) symbols.splice(at, 2, symbols[at]! + symbols[at + 1]!);
      }
    }
    if (this.cache.size < 50_000) this.cache.set(word, symbols.length);
    return symbols.length;
  }
}

