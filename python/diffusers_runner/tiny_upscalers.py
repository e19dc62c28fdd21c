"""Tiny random-weight ESRGAN upscalers for tests: `python -m diffusers_runner.tiny_upscalers OUT_DIR` writes
OUT_DIR/tiny_x4.safetensors (basicsr's key layout) and OUT_DIR/tiny-2x.pth (the original ESRGAN repository's
layout, wrapped in params_ema as Real-ESRGAN ships it), each a real RRDBNet with 8 features and one block."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from .esrgan import RRDBNet


def _state(scale: int, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = RRDBNet({4: 3, 2: 12}[scale], features=8, blocks=1, growth=4, scale=scale)
    return {name: tensor.clone().contiguous() for name, tensor in net.state_dict().items()}


def _original_layout(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    renamed = {}
    for name, tensor in state.items():
        parts = name.split(".")
        if parts[0] == "body":
            renamed[f"model.1.sub.{parts[1]}.RDB{parts[2][-1]}.conv{parts[3][-1]}.0.{parts[4]}"] = tensor
        else:
            index = {"conv_first": "model.0", "conv_body": "model.1.sub.1", "conv_up1": "model.3", "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}[parts[0]]
            renamed[f"{index}.{parts[1]}"] = tensor
    return renamed


def build_all(out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    save_file(_state(4, 1), str(out / "tiny_x4.safetensors"))
    torch.save({"params_ema": _original_layout(_state(2, 2))}, out / "tiny-2x.pth")
    return {"tiny_x4": str(out / "tiny_x4.safetensors"), "tiny-2x": str(out / "tiny-2x.pth")}


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m diffusers_runner.tiny_upscalers OUT_DIR", file=sys.stderr)
        return 2
    print(json.dumps(build_all(Path(argv[0]))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
