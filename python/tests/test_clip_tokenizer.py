"""The CLIP tokenizer built offline from open-clip-torch's BPE vocabulary gives the reference tokenizer's ids.

Expected ids are those of Hugging Face's CLIPTokenizer for openai/clip-vit-base-patch32 (every CLIP model shares the
tokenizer), as written in elixir-nx/bumblebee's test/bumblebee/text/clip_tokenizer_test.exs ("a photo of a cat",
"a photo of a dog") and in several tokenizer ports' tests ("Hello, world!").
"""

import pytest
from transformers import CLIPTokenizer

from diffusers_runner.clip_tokenizer import build_clip_tokenizer, find_vocab_file

REFERENCE = {
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "a photo of a dog": [49406, 320, 1125, 539, 320, 1929, 49407],
    "Hello, world!": [49406, 3306, 267, 1002, 256, 49407],
    # Case and runs of spaces are normalised away, as CLIP's own tokenizer does.
    "  A PHOTO of  a Cat": [49406, 320, 1125, 539, 320, 2368, 49407],
}


@pytest.fixture(scope="module")
def vocab_file():
    found = find_vocab_file()
    assert found is not None, "scripts/setup-python.sh puts open-clip-torch's bpe_simple_vocab_16e6.txt.gz in .cache/clip"
    return found


def test_the_built_tokenizer_gives_the_reference_ids_and_survives_save_and_load(vocab_file, tmp_path):
    built = build_clip_tokenizer(vocab_file, tmp_path / "tokenizer")
    loaded = CLIPTokenizer.from_pretrained(tmp_path / "tokenizer", local_files_only=True)
    assert len(built) == len(loaded) == 49408
    for text, ids in REFERENCE.items():
        assert built(text).input_ids == ids, text
        assert loaded(text).input_ids == ids, text
    assert loaded.pad_token_id == 49407


def test_sdxls_second_tokenizer_differs_only_in_its_pad_token(vocab_file, tmp_path):
    build_clip_tokenizer(vocab_file, tmp_path / "tokenizer_2", pad_token="!")
    second = CLIPTokenizer.from_pretrained(tmp_path / "tokenizer_2", local_files_only=True)
    assert second.pad_token_id == 0
    padded = second("a photo of a cat", padding="max_length", max_length=10).input_ids
    assert padded == REFERENCE["a photo of a cat"] + [0, 0, 0]
