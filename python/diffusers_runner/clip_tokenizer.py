"""CLIP's BPE tokenizer, built offline from the vocabulary open-clip-torch ships (bpe_simple_vocab_16e6.txt.gz).

A single-file checkpoint holds the text encoders' weights but no tokenizer, and without the real one a prompt
becomes the wrong token ids. The gzip holds CLIP's merges; the vocabulary is derived from them exactly as OpenAI's
simple_tokenizer.py and Hugging Face's CLIPTokenizer order it: 256 byte symbols, the same with the end-of-word
mark, one token per merge, then the start and end tokens (49,408 in all). SD 1.5 and SDXL's first encoder pad with
the end token; SDXL's second (OpenCLIP ViT-bigG) pads with "!" (id 0).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

# OpenAI's tokenizer uses the first 49152 - 256 - 2 merges of the file (the rest are never reached).
MERGES_USED = 49152 - 256 - 2
VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
SPECIAL_TOKENS = ["<|startoftext|>", "<|endoftext|>"]


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte-level BPE alphabet: printable bytes map to themselves, the rest to code points above 255."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return {byte: chr(code) for byte, code in zip(printable, codes)}


def vocab_and_merges(vocab_gz: str | os.PathLike[str]) -> tuple[dict[str, int], list[str]]:
    lines = gzip.open(vocab_gz, "rt", encoding="utf-8").read().split("\n")
    merges = lines[1 : MERGES_USED + 1]  # line 0 is the file's header
    symbols = list(bytes_to_unicode().values())
    tokens = symbols + [symbol + "</w>" for symbol in symbols] + ["".join(merge.split()) for merge in merges] + SPECIAL_TOKENS
    return {token: index for index, token in enumerate(tokens)}, merges


def build_clip_tokenizer(vocab_gz: str | os.PathLike[str], out: str | os.PathLike[str], pad_token: str = "<|endoftext|>"):
    """Writes a CLIPTokenizer folder (save_pretrained layout) to `out` and returns the tokenizer."""
    from transformers import CLIPTokenizer

    vocab, merges = vocab_and_merges(vocab_gz)
    pairs = [tuple(merge.split()) for merge in merges]
    tokenizer = CLIPTokenizer(vocab=vocab, merges=pairs, pad_token=pad_token, model_max_length=77)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tokenizer.save_pretrained(out)
    return tokenizer


def find_vocab_file() -> Path | None:
    """KITTY_IMAGES_CLIP_VOCAB, else what scripts/setup-python.sh put in the project's .cache/clip."""
    explicit = os.environ.get("KITTY_IMAGES_CLIP_VOCAB")
    if explicit:
        return Path(explicit) if Path(explicit).is_file() else None
    bundled = Path(__file__).resolve().parents[2] / ".cache" / "clip" / VOCAB_FILE
    return bundled if bundled.is_file() else None
