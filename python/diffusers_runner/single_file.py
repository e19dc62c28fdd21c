"""Single-file checkpoints (`.safetensors`, `.ckpt`): what most people download from Civitai or Hugging Face.

diffusers' from_single_file converts the weights, but it needs each component's config and the tokenizers, which a
checkpoint does not hold; by default it fetches them from the Hub. Here they come from the project instead: the
real SD 1.5, SDXL base and SDXL refiner configs ship as JSON (single_file_configs/), and CLIP's tokenizer is built
from the BPE vocabulary scripts/setup-python.sh fetched. The two are assembled once into a cache folder that
from_single_file takes as `config=`, with local_files_only, so loading never touches the network.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .clip_tokenizer import build_clip_tokenizer, find_vocab_file

SUFFIXES = (".safetensors", ".ckpt", ".pt")
CONFIGS = Path(__file__).resolve().parent / "single_file_configs"
# SDXL's second tokenizer (OpenCLIP ViT-bigG) pads with "!"; the CLIP ViT-L ones pad with the end token.
TOKENIZERS = {
    "sd15": {"tokenizer": "<|endoftext|>"},
    "sdxl": {"tokenizer": "<|endoftext|>", "tokenizer_2": "!"},
    "sdxl_refiner": {"tokenizer_2": "!"},
}


class SingleFileError(ValueError):
    """A checkpoint that cannot be loaded, with what to do about it."""


def is_single_file(path: str | os.PathLike[str]) -> bool:
    return Path(path).suffix.lower() in SUFFIXES


def checkpoint_keys(path: str | os.PathLike[str]) -> set[str]:
    """The tensor names, read without loading the weights where the format allows."""
    if Path(path).suffix.lower() == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            return set(handle.keys())
    import torch

    # weights_only: a pickle checkpoint cannot run code on load. mmap spares reading it all, where the format allows.
    try:
        state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else {}
    return set(state)


def checkpoint_family(path: str | os.PathLike[str]) -> str:
    """SD 1.5, SDXL base or SDXL refiner, from the text encoders the checkpoint carries (Stability AI's layout)."""
    try:
        keys = checkpoint_keys(path)
    except Exception as exc:  # noqa: BLE001 - safetensors and torch raise many kinds for a file that is not a checkpoint
        raise SingleFileError(f"{path} could not be read as a checkpoint: {type(exc).__name__}: {exc}") from exc
    if any(key.startswith("conditioner.embedders.1.") for key in keys):
        return "sdxl"
    if any(key.startswith("conditioner.embedders.0.model.") for key in keys):
        return "sdxl_refiner"
    if any(key.startswith("cond_stage_model.transformer.") for key in keys):
        return "sd15"
    if any(key.startswith("cond_stage_model.model.") for key in keys):
        raise SingleFileError(f"{path} is a Stable Diffusion 2.x checkpoint; supported: SD 1.5, SDXL base, SDXL refiner")
    hint = "a diffusers-layout file: point models.yaml at its folder instead" if any(key.startswith(("down_blocks.", "text_model.")) for key in keys) else "not a Stable Diffusion checkpoint"
    raise SingleFileError(f"{path} has no text encoder weights in Stability AI's layout ({hint}; it holds {len(keys)} tensors)")


def config_folder(family: str, cache_root: str | os.PathLike[str] | None = None) -> Path:
    """The shipped configs for `family` plus its tokenizers, assembled once into the cache."""
    if family not in TOKENIZERS:
        raise SingleFileError(f"no single-file config for {family}")
    root = Path(cache_root or os.environ.get("KITTY_IMAGES_RUNNER_CACHE") or Path.home() / ".cache" / "kitty-images")
    target = root / "single-file-config" / family
    if (target / "model_index.json").is_file():
        return target
    vocab = find_vocab_file()
    if vocab is None:
        raise SingleFileError(
            "single-file checkpoints need CLIP's tokenizer vocabulary, which is missing: run `npm run setup` "
            "(scripts/setup-python.sh fetches it) or set KITTY_IMAGES_CLIP_VOCAB to a bpe_simple_vocab_16e6.txt.gz"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place: a runner killed halfway leaves no half folder behind.
    staging = Path(tempfile.mkdtemp(prefix=f".{family}-", dir=target.parent))
    try:
        shutil.copytree(CONFIGS / family, staging, dirs_exist_ok=True)
        for folder, pad_token in TOKENIZERS[family].items():
            build_clip_tokenizer(vocab, staging / folder, pad_token=pad_token)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "model_index.json").is_file():  # another runner won the race: its folder is as good
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
