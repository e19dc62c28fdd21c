"""Tiny random-weight ControlNets for tests, made from the tiny SD 1.5 and SDXL UNets, and one of the tiny FLUX
transformer's shape.

`python -m diffusers_runner.tiny_controlnets MODELS_DIR OUT_DIR` writes OUT_DIR/{sd15_canny, sd15_depth,
sdxl_canny, sdxl_union, flux_canny, zimage_canny}, each a diffusers ControlNet folder saved with save_pretrained. A ControlNet starts with its
output convolutions at zero, so that training begins from "no effect": left so, a random one would change no pixel.
They are re-randomised here, so a test can see control change the image and two control images differ.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from diffusers import ControlNetModel, ControlNetUnionModel, FluxControlNetModel, UNet2DConditionModel, ZImageControlNetModel

from .tiny_families import FLUX_CLIP_HIDDEN, T5_HIDDEN

SEED = 7


def _wake(model: torch.nn.Module, seed: int) -> None:
    """Random weights where training would start from zero (the zero convolutions and the conditioning's output)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out", "controlnet_blocks", "controlnet_single_blocks", "controlnet_x_embedder")) or name.startswith("control_all_x_embedder") or name.endswith(("after_proj.weight", "after_proj.bias", "before_proj.weight", "before_proj.bias")):
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def build_controlnet(unet_dir: Path, out: Path, seed: int, union: bool = False) -> Path:
    unet = UNet2DConditionModel.from_pretrained(unet_dir, subfolder="unet")
    model = (ControlNetUnionModel if union else ControlNetModel).from_unet(unet, conditioning_embedding_out_channels=(8, 16, 32, 32))
    if union:
        # from_unet leaves the union's own transformer at the real model's 320 channels; a tiny UNet has fewer. Eight
        # control types, as ControlNet-Union-ProMax has (the plain one has six: no tile, no repaint).
        width = unet.config.block_out_channels[0]
        torch.manual_seed(seed)
        config = {key: value for key, value in model.config.items() if key != "_use_default_values"}  # or from_config drops what is set here
        model = ControlNetUnionModel.from_config({**config, "num_trans_channel": width, "num_proj_channel": width, "num_trans_head": 2, "num_control_type": 8})
    _wake(model, seed)
    model.save_pretrained(out)
    return out


def build_flux_controlnet(out: Path, seed: int) -> Path:
    """A FLUX.1 ControlNet of the tiny FLUX transformer's shape (tiny_families.build_flux)."""
    torch.manual_seed(seed)
    model = FluxControlNetModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=T5_HIDDEN,
        pooled_projection_dim=FLUX_CLIP_HIDDEN,
        guidance_embeds=True,
        axes_dims_rope=(4, 6, 6),
    )
    _wake(model, seed)
    model.save_pretrained(out)
    return out


def build_zimage_controlnet(out: Path, seed: int) -> Path:
    """A Z-Image ControlNet (the Fun-Controlnet-Union layout) of the tiny Z-Image transformer's shape."""
    torch.manual_seed(seed)
    model = ZImageControlNetModel(
        control_layers_places=[0],
        control_refiner_layers_places=[0],
        control_in_dim=16,
        add_control_noise_refiner="control_noise_refiner",
        dim=32,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
    )
    _wake(model, seed)
    model.save_pretrained(out)
    return out


def build_all(models: Path, out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    built = {
        "sd15_canny": build_controlnet(models / "sd15", out / "sd15_canny", SEED),
        "sd15_depth": build_controlnet(models / "sd15", out / "sd15_depth", SEED + 1),
        "sdxl_canny": build_controlnet(models / "sdxl", out / "sdxl_canny", SEED + 2),
        "sdxl_union": build_controlnet(models / "sdxl", out / "sdxl_union", SEED + 3, union=True),
        "flux_canny": build_flux_controlnet(out / "flux_canny", SEED + 4),
        "zimage_canny": build_zimage_controlnet(out / "zimage_canny", SEED + 5),
    }
    return {name: str(path) for name, path in built.items()}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m diffusers_runner.tiny_controlnets MODELS_DIR OUT_DIR", file=sys.stderr)
        return 2
    print(json.dumps(build_all(Path(argv[0]), Path(argv[1]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
