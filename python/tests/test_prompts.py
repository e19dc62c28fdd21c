"""Long prompts and A1111 emphasis, against the tiny pipelines' real CLIP encoders."""

import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from diffusers_runner.prompts import CHUNK_TOKENS, Fragment, PromptEncoder, parse_emphasis, tokenize_chunks


def weights(prompt: str) -> list[tuple[str, float]]:
    return [(fragment.text, round(fragment.weight, 4)) for fragment in parse_emphasis(prompt)]


def test_emphasis_follows_a1111s_rules():
    assert weights("a cat") == [("a cat", 1.0)]
    assert weights("a (cat) and [dog]") == [("a ", 1.0), ("cat", 1.1), (" and ", 1.0), ("dog", 0.9091)]
    assert weights("((big)) (cat:1.3)") == [("big", 1.21), (" ", 1.0), ("cat", 1.3)]
    assert weights("(a (b:2) c:0.5)") == [("a ", 0.5), ("b", 1.0), (" c", 0.5)]
    assert weights(r"\(literal\) (x:.5)") == [("(literal) ", 1.0), ("x", 0.5)]
    # Brackets that never close still weigh what follows; a stray closer is just text.
    assert weights("a (cat") == [("a ", 1.0), ("cat", 1.1)]
    assert weights("smile :) ok") == [("smile :) ok", 1.0)]
    # A colon that is not a weight stays text.
    assert weights("(ratio: wide)") == [("ratio: wide", 1.1)]


def test_break_starts_a_new_chunk():
    fragments = parse_emphasis("a castle BREAK a moat")
    assert fragments == [Fragment("a castle", 1.0), Fragment("", 1.0, is_break=True), Fragment("a moat", 1.0)]


@pytest.fixture(scope="module")
def sd15(tiny_models):
    return StableDiffusionPipeline.from_pretrained(tiny_models["sd15"], safety_checker=None, local_files_only=True)


@pytest.fixture(scope="module")
def sdxl(tiny_models):
    return StableDiffusionXLPipeline.from_pretrained(tiny_models["sdxl"], local_files_only=True)


def test_long_prompts_are_cut_into_75_token_chunks_and_a_phrase_is_not_split(sd15):
    # The tiny tokenizer has one token per character and a ",</w>" token after a comma that ends a word.
    chunks, total = tokenize_chunks(sd15.tokenizer, parse_emphasis("x" * 200))
    assert total == 200 and [len(chunk.ids) for chunk in chunks] == [75, 75, 50]
    prompt = "y" * 70 + ", " + "z" * 10
    chunks, total = tokenize_chunks(sd15.tokenizer, parse_emphasis(prompt))
    assert [len(chunk.ids) for chunk in chunks] == [71, 10], "the words after the last comma move to the next chunk"
    chunks, _ = tokenize_chunks(sd15.tokenizer, parse_emphasis("ab BREAK cd"))
    assert [len(chunk.ids) for chunk in chunks] == [2, 2]


def test_a_short_plain_prompt_encodes_exactly_as_diffusers_does(sd15, sdxl):
    ours, negative = PromptEncoder(sd15).encode_pair("a red cube", "blurry")
    theirs, their_negative = sd15.encode_prompt("a red cube", "cpu", 1, True, negative_prompt="blurry")
    assert torch.equal(ours.embeds, theirs) and torch.equal(negative.embeds, their_negative)

    ours, negative = PromptEncoder(sdxl).encode_pair("a red cube", None)
    embeds, negative_embeds, pooled, negative_pooled = sdxl.encode_prompt("a red cube", device="cpu")
    assert torch.equal(ours.embeds, embeds) and torch.equal(ours.pooled, pooled)
    assert torch.equal(negative.embeds, negative_embeds) and torch.equal(negative.pooled, negative_pooled)


def test_a_long_prompt_keeps_every_chunk_and_both_sides_match_in_length(sdxl):
    encoder = PromptEncoder(sdxl)
    positive, negative = encoder.encode_pair("w" * 160, "blurry")
    assert positive.tokens == 160 and positive.chunks == 3
    assert positive.embeds.shape == (1, 3 * (CHUNK_TOKENS + 2), 32 + 48)
    assert negative.embeds.shape == positive.embeds.shape
    assert positive.pooled.shape == (1, 48)
    # The pooled embedding is the first chunk's, whatever follows it.
    assert torch.equal(positive.pooled, encoder.encode("w" * 160 + " and more").pooled)
    positive, negative = encoder.encode_pair("short", "n" * 100)
    assert positive.chunks == negative.chunks == 2


def test_emphasis_changes_the_weighted_tokens_and_keeps_the_mean(sd15):
    encoder = PromptEncoder(sd15)
    plain, weighted = encoder.encode("red cube"), encoder.encode("(red:1.5) cube")
    assert plain.embeds.shape == weighted.embeds.shape
    assert not torch.allclose(plain.embeds, weighted.embeds)
    assert torch.allclose(plain.embeds.mean(), weighted.embeds.mean(), atol=1e-5)
