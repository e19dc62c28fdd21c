"""Which torch device and dtype to run on. MPS runs float32: float16 on MPS gives black or noisy SDXL images."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DeviceChoice:
    device: str
    dtype: torch.dtype

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def empty_cache(self) -> None:
        """Hands freed accelerator memory back, after an eviction or an out-of-memory error."""
        if self.device == "cuda":
            torch.cuda.empty_cache()
        elif self.device == "mps":
            torch.mps.empty_cache()


def choose_device(requested: str | None = None) -> DeviceChoice:
    requested = (requested or os.environ.get("KITTY_IMAGES_DEVICE") or "auto").lower()
    if requested not in ("auto", "cuda", "mps", "cpu"):
        raise ValueError(f"KITTY_IMAGES_DEVICE must be auto, cuda, mps or cpu (got {requested!r})")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        return DeviceChoice("cuda", torch.float16)
    if requested in ("auto", "mps") and torch.backends.mps.is_available():
        return DeviceChoice("mps", torch.float32)
    if requested not in ("auto", "cpu"):
        raise ValueError(f"KITTY_IMAGES_DEVICE={requested} but torch reports no {requested} device")
    return DeviceChoice("cpu", torch.float32)
