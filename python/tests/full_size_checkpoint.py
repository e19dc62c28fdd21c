"""Writes a full-size SD 1.5 with random weights as ONE fp16 .safetensors in the original (LDM) layout, for apps
that tell a model's type from its tensor shapes (ComfyUI: context_dim 768 and model_channels 320 mean SD 1.5), so
the tiny test models will not do. The shapes come from the real configs the runner ships (single_file_configs/sd15),
the weights from a seeded random init; nothing is downloaded. About 2.1 GB.

Test helper only, never imported by the runner. `python -m tests.full_size_checkpoint OUT.safetensors` (from
python/) builds it once: a file this same builder wrote (its metadata holds a hash of the builder, the key mapping
and the configs) is reused, anything else at OUT is rebuilt. Prints OUT's path.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import sys
from pathlib import Path

from safetensors import safe_open

SEED = 0
# The real configs the runner ships for single files; read here as plain files, not through the runner's modules.
SD15_CONFIGS = Path(__file__).resolve().parents[1] / "diffusers_runner" / "single_file_configs" / "sd15"
MAPPING = Path(__file__).resolve().parent / "single_file_checkpoint.py"
METADATA_KEY = "kitty_full_size_builder"


def builder_digest() -> str:
    """Changes whenever what this builder would write changes."""
    digest = hashlib.sha256()
    for file in [Path(__file__), MAPPING, *sorted(SD15_CONFIGS.rglob("*.json"))]:
        digest.update(file.read_bytes())
    # The random init comes from torch's generator and the modules' init code: another version may draw other weights.
    for package in ("torch", "diffusers", "transformers"):
        digest.update(importlib.metadata.version(package).encode())
    return digest.hexdigest()[:16]


def sd15_state_dict() -> dict:
    """UNet, VAE and CLIP ViT-L text model at SD 1.5's real sizes, random weights, under the LDM checkpoint names."""
    # Imported here, so finding the file already built costs no torch import.
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    # The diffusers -> LDM key mapping single_file_checkpoint.py applies to whole folders, applied here to modules
    # built in memory, so 2 GB of weights are not written out as a folder first only to be read back.
    from tests.single_file_checkpoint import _hf_clip, _prefixed, _unet_to_ldm, _vae_to_ldm

    def half(state: dict) -> dict:
        return {key: value.to(torch.float16) for key, value in state.items()}

    torch.manual_seed(SEED)
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(SD15_CONFIGS / "unet"))
    checkpoint = _prefixed("model.diffusion_model.", half(_unet_to_ldm(dict(unet.config), unet.state_dict())))
    del unet
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(SD15_CONFIGS / "vae"))
    checkpoint |= _prefixed("first_stage_model.", half(_vae_to_ldm(dict(vae.config), vae.state_dict())))
    del vae
    text_model = CLIPTextModel(CLIPTextConfig.from_json_file(SD15_CONFIGS / "text_encoder" / "config.json"))
    checkpoint |= _prefixed("cond_stage_model.transformer.", half(_hf_clip(text_model.state_dict())))
    return checkpoint


def is_current(out_file: Path, digest: str) -> bool:
    if not out_file.is_file():
        return False
    try:
        with safe_open(out_file, framework="pt") as checkpoint:
            return (checkpoint.metadata() or {}).get(METADATA_KEY) == digest
    except Exception:  # a partial or foreign file: rebuild it
        return False


def build(out_file: str | Path) -> Path:
    """OUT, built unless this builder already wrote it."""
    out_file = Path(out_file)
    digest = builder_digest()
    if is_current(out_file, digest):
        return out_file
    out_file.parent.mkdir(parents=True, exist_ok=True)
    from safetensors.torch import save_file

    partial = out_file.with_name(out_file.name + ".partial")
    save_file(sd15_state_dict(), partial, metadata={"format": "pt", METADATA_KEY: digest})
    partial.rename(out_file)
    return out_file


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].endswith(".safetensors"):
        print("usage: python -m tests.full_size_checkpoint OUT.safetensors", file=sys.stderr)
        return 2
    print(json.dumps({"checkpoint": str(build(argv[0]))}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
