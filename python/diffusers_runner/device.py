"""Which torch device and dtype to run on, and the speed options each device gets.

MPS runs float32: float16 on MPS gives black or noisy SDXL images. CUDA runs float16; the SDXL VAE overflows in
float16, so diffusers decodes in float32 when the VAE's config says force_upcast (SDXL's does), and we keep it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

# diffusers' MPS guidance: attention slicing saves memory at a cost in speed (about 20% on Apple silicon), worth it
# only when memory is tight. Below this much unified memory, slice; a Mac Studio's 64 GB and up runs without.
SLICING_BELOW_BYTES = 64 * 1024**3


@dataclass(frozen=True)
class RuntimeOptions:
    """What is applied to every pipeline on this device; each image's sidecar records it."""

    attention_slicing: bool
    channels_last: bool
    compile: bool
    # "off", "first_block" or "taylorseer": reuse transformer outputs across steps where the family allows it
    step_cache: str = "off"

    def as_record(self) -> dict[str, bool]:
        return {"attentionSlicing": self.attention_slicing, "channelsLast": self.channels_last, "compile": self.compile}


@dataclass(frozen=True)
class DeviceChoice:
    device: str
    dtype: torch.dtype
    options: RuntimeOptions = RuntimeOptions(attention_slicing=False, channels_last=False, compile=False)

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def empty_cache(self) -> None:
        """Hands freed accelerator memory back, after an eviction or an out-of-memory error."""
        if self.device == "cuda":
            torch.cuda.empty_cache()
        elif self.device == "mps":
            torch.mps.empty_cache()


def _flag(env: Mapping[str, str], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = (env.get(name) or default).strip().lower()
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")
    return value


def runtime_options(device: str, memory_bytes: int | None, env: Mapping[str, str]) -> RuntimeOptions:
    """The policy, pure so it can be tested for every device: slicing on MPS only when memory is tight (or asked
    for), channels_last on CUDA, torch.compile only when KITTY_IMAGES_COMPILE=1 (the first job pays for compiling)."""
    slicing = _flag(env, "KITTY_IMAGES_ATTENTION_SLICING", ("auto", "on", "off"), "auto")
    compile_flag = _flag(env, "KITTY_IMAGES_COMPILE", ("0", "1"), "0")
    step_cache = _flag(env, "KITTY_IMAGES_STEP_CACHE", ("off", "first_block", "taylorseer"), "off")
    if slicing == "auto":
        attention_slicing = device == "mps" and (memory_bytes is None or memory_bytes < SLICING_BELOW_BYTES)
    else:
        attention_slicing = slicing == "on"
    return RuntimeOptions(
        attention_slicing=attention_slicing,
        channels_last=device == "cuda",
        compile=compile_flag == "1" and device == "cuda",
        step_cache=step_cache,
    )


def total_memory_bytes() -> int | None:
    """Physical memory, which on Apple silicon is the unified memory MPS draws from."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def choose_device(requested: str | None = None, env: Mapping[str, str] | None = None) -> DeviceChoice:
    env = os.environ if env is None else env
    requested = (requested or env.get("KITTY_IMAGES_DEVICE") or "auto").lower()
    if requested not in ("auto", "cuda", "mps", "cpu"):
        raise ValueError(f"KITTY_IMAGES_DEVICE must be auto, cuda, mps or cpu (got {requested!r})")
    if requested in ("auto", "cuda") and torch.cuda.is_available():
        device, dtype = "cuda", torch.float16
    elif requested in ("auto", "mps") and torch.backends.mps.is_available():
        device, dtype = "mps", torch.float32
    elif requested not in ("auto", "cpu"):
        raise ValueError(f"KITTY_IMAGES_DEVICE={requested} but torch reports no {requested} device")
    else:
        device, dtype = "cpu", torch.float32
    return DeviceChoice(device, dtype, runtime_options(device, total_memory_bytes(), env))
