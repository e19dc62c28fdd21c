"""Prompts past CLIP's 77-token window, and AUTOMATIC1111's emphasis syntax, turned into prompt embeddings.

CLIP sees 77 tokens: a start token, 75 of the prompt, an end token. diffusers drops the rest, and LLM agents
write long prompts. As AUTOMATIC1111 does, the prompt is cut into 75-token chunks, each chunk is encoded on its
own (both text encoders for SDXL) and the embeddings are laid end to end; the UNet's cross-attention takes any
length. SDXL's pooled embedding comes from the first chunk.

Emphasis: `(word)` weighs 1.1, `((word))` 1.21, `[word]` 1/1.1, `(word:1.3)` 1.3, `\\(` is a literal bracket,
and `BREAK` starts a new chunk. A weight scales that token's embedding, then the chunk is rescaled to keep its
mean, as A1111 does, so emphasis shifts attention without changing the overall magnitude.
A prompt of one chunk without emphasis gives exactly the embeddings diffusers' own encode_prompt gives.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch

CHUNK_TOKENS = 75
EMPHASIS = 1.1
# When a chunk would end mid-phrase, break after the last comma if it is this close to the end (A1111's default).
COMMA_BACKTRACK = 20

_WEIGHT = re.compile(r":\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*\)")
_BREAK = re.compile(r"\s*\bBREAK\b\s*")


@dataclass(frozen=True)
class Fragment:
    text: str
    weight: float
    # True for a BREAK: the chunk in progress ends here, padded.
    is_break: bool = False


def parse_emphasis(prompt: str) -> list[Fragment]:
    """Splits a prompt into runs of text that share one weight; BREAK becomes its own fragment."""
    fragments: list[Fragment] = []
    for index, part in enumerate(_BREAK.split(prompt)):
        if index > 0:
            fragments.append(Fragment("", 1.0, is_break=True))
        fragments.extend(_parse_part(part))
    return fragments


def _parse_part(text: str) -> list[Fragment]:
    chars: list[list[Any]] = []  # [character, weight]
    open_brackets: list[tuple[str, int]] = []  # (bracket, index in chars where its span starts)

    def scale(start: int, factor: float) -> None:
        for item in chars[start:]:
            item[1] *= factor

    position = 0
    while position < len(text):
        char = text[position]
        if char == "\\" and position + 1 < len(text):
            chars.append([text[position + 1], 1.0])
            position += 2
            continue
        if char in "([":
            open_brackets.append((char, len(chars)))
        elif char == ":" and open_brackets and open_brackets[-1][0] == "(" and (match := _WEIGHT.match(text, position)):
            scale(open_brackets.pop()[1], float(match.group(1)))
            position = match.end()
            continue
        elif char == ")" and open_brackets and open_brackets[-1][0] == "(":
            scale(open_brackets.pop()[1], EMPHASIS)
        elif char == "]" and open_brackets and open_brackets[-1][0] == "[":
            scale(open_brackets.pop()[1], 1 / EMPHASIS)
        else:
            chars.append([char, 1.0])
        position += 1
    # A bracket left open still applies to the rest of the prompt, as in A1111.
    for bracket, start in reversed(open_brackets):
        scale(start, EMPHASIS if bracket == "(" else 1 / EMPHASIS)

    fragments: list[Fragment] = []
    for char, weight in chars:
        if fragments and fragments[-1].weight == weight:
            fragments[-1] = Fragment(fragments[-1].text + char, weight)
        else:
            fragments.append(Fragment(char, weight))
    return [fragment for fragment in fragments if fragment.text]


@dataclass
class Chunk:
    ids: list[int]
    weights: list[float]


def tokenize_chunks(tokenizer: Any, fragments: list[Fragment]) -> tuple[list[Chunk], int]:
    """Token ids (without start/end tokens) cut into chunks of at most 75; also the prompt's token count."""
    comma = tokenizer.convert_tokens_to_ids(",</w>")
    chunks: list[Chunk] = []
    current = Chunk([], [])
    last_comma = -1
    total = 0

    def close_chunk() -> None:
        nonlocal current, last_comma
        chunks.append(current)
        current = Chunk([], [])
        last_comma = -1

    for fragment in fragments:
        if fragment.is_break:
            close_chunk()
            continue
        ids = tokenizer(fragment.text, add_special_tokens=False, truncation=False, verbose=False).input_ids
        total += len(ids)
        for token in ids:
            if len(current.ids) == CHUNK_TOKENS:
                if last_comma >= 0 and len(current.ids) - last_comma <= COMMA_BACKTRACK:
                    # Move the words after the last comma to the next chunk so a phrase is not split.
                    carry = Chunk(current.ids[last_comma + 1 :], current.weights[last_comma + 1 :])
                    current.ids, current.weights = current.ids[: last_comma + 1], current.weights[: last_comma + 1]
                    close_chunk()
                    current = carry
                else:
                    close_chunk()
            if token == comma:
                last_comma = len(current.ids)
            current.ids.append(token)
            current.weights.append(fragment.weight)
    if current.ids or not chunks:
        close_chunk()
    return chunks, total


@dataclass
class PromptEmbeddings:
    embeds: torch.Tensor
    # SDXL only: the second encoder's projected output for the first chunk.
    pooled: torch.Tensor | None
    tokens: int

    @property
    def chunks(self) -> int:
        return self.embeds.shape[1] // (CHUNK_TOKENS + 2)


def plain_prompt(prompt: str) -> tuple[str, bool]:
    """The prompt's text without emphasis syntax or BREAKs, for an encoder that cannot weight tokens (T5, an LLM),
    and whether anything was taken out. `(red:1.3) fox` becomes `red fox`; an escaped `\\(` stays a bracket."""
    fragments = parse_emphasis(prompt)
    text = "".join(" " if fragment.is_break else fragment.text for fragment in fragments)
    text = re.sub(r"\s{2,}", " ", text).strip()
    return text, text != prompt.strip()


class PromptEncoder:
    """Encodes prompts for one pipeline: SD 1.5 (one CLIP encoder) or SDXL base / refiner (one or both)."""

    def __init__(self, pipe: Any) -> None:
        self.pipe = pipe
        self.is_sdxl = hasattr(pipe, "text_encoder_2")
        pairs = [(getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None)), (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None))]
        self.encoders = [(tokenizer, encoder) for tokenizer, encoder in pairs if tokenizer is not None and encoder is not None]

    def encode_pair(self, prompt: str, negative: str | None) -> tuple[PromptEmbeddings, PromptEmbeddings]:
        """The prompt's and the negative prompt's embeddings, padded to the same number of chunks."""
        positive = self.encode(prompt)
        zero_negative = self.is_sdxl and not negative and bool(self.pipe.config.get("force_zeros_for_empty_prompt", False))
        if zero_negative:
            # SDXL's convention for "no negative prompt": zeros, not the encoding of "".
            return positive, PromptEmbeddings(torch.zeros_like(positive.embeds), _zeros_or_none(positive.pooled), 0)
        # Classifier-free guidance needs both sides the same length: the shorter gets empty chunks.
        negative_embeddings = self.encode(negative or "", min_chunks=positive.chunks)
        if negative_embeddings.chunks > positive.chunks:
            positive = self.encode(prompt, min_chunks=negative_embeddings.chunks)
        return positive, negative_embeddings

    @torch.no_grad()
    def encode(self, prompt: str, min_chunks: int = 1) -> PromptEmbeddings:
        fragments = parse_emphasis(prompt)
        per_encoder: list[torch.Tensor] = []
        pooled: torch.Tensor | None = None
        tokens = 0
        for tokenizer, encoder in self.encoders:
            chunks, tokens = tokenize_chunks(tokenizer, fragments)
            chunks += [Chunk([], []) for _ in range(min_chunks - len(chunks))]
            outputs = []
            for index, chunk in enumerate(chunks):
                hidden, chunk_pooled = self._encode_chunk(tokenizer, encoder, chunk)
                outputs.append(hidden)
                if index == 0:
                    pooled = chunk_pooled
            per_encoder.append(torch.cat(outputs, dim=1))
        embeds = torch.cat(per_encoder, dim=-1)
        return PromptEmbeddings(embeds, pooled if self.is_sdxl else None, tokens)

    def _encode_chunk(self, tokenizer: Any, encoder: Any, chunk: Chunk) -> tuple[torch.Tensor, torch.Tensor | None]:
        padding = CHUNK_TOKENS - len(chunk.ids)
        ids = [tokenizer.bos_token_id, *chunk.ids, tokenizer.eos_token_id] + [tokenizer.pad_token_id] * padding
        weights = torch.tensor([1.0, *chunk.weights, 1.0] + [1.0] * padding)
        input_ids = torch.tensor([ids], device=encoder.device)
        if self.is_sdxl:
            output = encoder(input_ids, output_hidden_states=True)
            # SDXL conditions on the penultimate layer; the projected output is pooled only by the second encoder.
            hidden = output.hidden_states[-2]
            pooled = output[0] if encoder is getattr(self.pipe, "text_encoder_2", None) else None
        else:
            hidden, pooled = encoder(input_ids)[0], None
        if bool((weights != 1.0).any()):
            original_mean = hidden.float().mean()
            hidden = hidden * weights.to(hidden.device, hidden.dtype).reshape(1, -1, 1)
            hidden = hidden * (original_mean / hidden.float().mean()).to(hidden.dtype)
        return hidden, pooled


def _zeros_or_none(tensor: torch.Tensor | None) -> torch.Tensor | None:
    return None if tensor is None else torch.zeros_like(tensor)
