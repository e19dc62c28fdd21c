"""ESRGAN-family upscalers (RRDBNet: ESRGAN, Real-ESRGAN x4plus / x2plus, and their many finetunes), read from a
.pth or .safetensors state dict without spandrel (whose torchvision dependency has no build for our torch and
would switch transformers' image processors off PIL), and run tile by tile so 4x of a 1024² image fits in memory.

Both key layouts in the wild load: basicsr's (`conv_first`, `body.N.rdb1.conv1`, `conv_up1`...) and the original
ESRGAN repository's (`model.0`, `model.1.sub.N.RDB1.conv1.0`, ...). The scale and the net's size are read from
the tensors: a 2x or 1x Real-ESRGAN takes its input pixel-unshuffled (12 or 48 input channels).
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from .protocol import DoneEvent, GenerateRequest, JobFailed, ProgressEvent

if TYPE_CHECKING:
    from .pipelines import ModelCache

TILE = 256
OVERLAP = 16


class _DenseBlock(nn.Module):
    """Residual dense block: five 3x3 convolutions, each seeing every earlier output."""

    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, growth, 3, 1, 1)
        self.conv2 = nn.Conv2d(features + growth, growth, 3, 1, 1)
        self.conv3 = nn.Conv2d(features + 2 * growth, growth, 3, 1, 1)
        self.conv4 = nn.Conv2d(features + 3 * growth, growth, 3, 1, 1)
        self.conv5 = nn.Conv2d(features + 4 * growth, features, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class _RRDB(nn.Module):
    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.rdb1 = _DenseBlock(features, growth)
        self.rdb2 = _DenseBlock(features, growth)
        self.rdb3 = _DenseBlock(features, growth)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator in basicsr's layout: the body at the input's size, then 2x nearest upsampling twice."""

    def __init__(self, in_channels: int, features: int, blocks: int, growth: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.unshuffle = {4: 1, 2: 2, 1: 4}[scale]
        self.conv_first = nn.Conv2d(in_channels, features, 3, 1, 1)
        self.body = nn.Sequential(*[_RRDB(features, growth) for _ in range(blocks)])
        self.conv_body = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_hr = nn.Conv2d(features, features, 3, 1, 1)
        self.conv_last = nn.Conv2d(features, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        features = self.conv_first(x)
        features = features + self.conv_body(self.body(features))
        features = self.lrelu(self.conv_up1(F.interpolate(features, scale_factor=2, mode="nearest")))
        features = self.lrelu(self.conv_up2(F.interpolate(features, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(features)))


# The original ESRGAN repository's names, mapped to basicsr's.
_OLD_NAMES = [
    (r"^model\.0\.", "conv_first."),
    (r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.", lambda m: f"body.{m[1]}.rdb{m[2]}.conv{m[3]}."),
    (r"^model\.1\.sub\.\d+\.", "conv_body."),  # the last entry of the sub-sequence: renamed below by position
    (r"^model\.3\.", "conv_up1."),
    (r"^model\.6\.", "conv_up2."),
    (r"^model\.8\.", "conv_hr."),
    (r"^model\.10\.", "conv_last."),
]


def _basicsr_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if "conv_first.weight" in state:
        return state
    if "model.0.weight" not in state:
        raise JobFailed("model_load_failed", "not an ESRGAN (RRDBNet) state dict: it has neither conv_first nor model.0")
    renamed: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        for pattern, replacement in _OLD_NAMES:
            if re.match(pattern, name):
                renamed[re.sub(pattern, replacement, name)] = tensor
                break
    return renamed


@dataclass
class Upscaler:
    net: RRDBNet
    scale: int
    name: str


def load_upscaler(path: str, device: str, dtype: torch.dtype = torch.float32) -> Upscaler:
    """An RRDBNet from a .pth or .safetensors file, its shape read from the tensors."""
    file = Path(path)
    if not file.is_file():
        raise JobFailed("model_not_found", f"upscaler {path} does not exist")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(file))
        else:
            state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file is the user's to fix
        raise JobFailed("model_load_failed", f"upscaler {path} could not be read: {exc}") from exc
    for wrapper in ("params_ema", "params", "state_dict"):
        if isinstance(state, dict) and wrapper in state and isinstance(state[wrapper], dict):
            state = state[wrapper]
    state = _basicsr_names(state)
    try:
        in_channels, features = state["conv_first.weight"].shape[1], state["conv_first.weight"].shape[0]
        growth = state["body.0.rdb1.conv1.weight"].shape[0]
        blocks = 1 + max(int(name.split(".")[1]) for name in state if name.startswith("body."))
    except (KeyError, ValueError) as exc:
        raise JobFailed("model_load_failed", f"upscaler {path} is not an RRDBNet this server reads: {exc}") from exc
    scale = {3: 4, 12: 2, 48: 1}.get(int(in_channels))
    if scale is None:
        raise JobFailed("model_load_failed", f"upscaler {path} takes {in_channels} input channels: not an RGB ESRGAN")
    net = RRDBNet(int(in_channels), int(features), blocks, int(growth), scale)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise JobFailed("model_load_failed", f"upscaler {path} does not fit an RRDBNet: {exc}") from exc
    return Upscaler(net.eval().to(device=device, dtype=dtype), scale, file.stem)


def tiles(width: int, height: int, tile: int = TILE, overlap: int = OVERLAP) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """The tiles covering the image: each tile's own box (left, top, right, bottom; they do not overlap) and the box
    it is run on, reaching `overlap` pixels into its neighbours so its edges see what lies beyond them."""
    found = []
    for top in range(0, height, tile):
        for left in range(0, width, tile):
            own = (left, top, min(width, left + tile), min(height, top + tile))
            run = (max(0, left - overlap), max(0, top - overlap), min(width, own[2] + overlap), min(height, own[3] + overlap))
            found.append((own, run))
    return found


@torch.inference_mode()
def upscale(upscaler: Upscaler, image: Image.Image, scale: int, cancel: threading.Event, progress: Callable[[int, int], None]) -> Image.Image:
    """The image at `scale` times its size: the net's own scale tile by tile (progress per tile), then resized
    (Lanczos) to `scale` where the net's differs (a 4x net asked for 2x)."""
    rgb = image.convert("RGB")
    pixels = torch.from_numpy(np.asarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1)
    factor = upscaler.scale
    out = torch.zeros(3, rgb.height * factor, rgb.width * factor)
    parameter = next(upscaler.net.parameters())
    every = tiles(rgb.width, rgb.height)
    for index, (own, run) in enumerate(every):
        if cancel.is_set():
            raise JobFailed("cancelled", "cancelled while upscaling")
        left, top, right, bottom = run
        piece = pixels[:, top:bottom, left:right].unsqueeze(0).to(device=parameter.device, dtype=parameter.dtype)
        # Pixel-unshuffled nets (2x, 1x) need sides their factor divides: pad, then cut the padding off again.
        multiple = upscaler.net.unshuffle
        pad_h, pad_w = (-piece.shape[2]) % multiple, (-piece.shape[3]) % multiple
        if pad_h or pad_w:
            piece = F.pad(piece, (0, pad_w, 0, pad_h), mode="reflect")
        result = upscaler.net(piece)[0].float().clamp(0, 1).cpu()
        # Only the tile's own part is kept; the overlap was context for its edges.
        x0, y0, x1, y1 = ((value - origin) * factor for value, origin in zip(own, (left, top, left, top)))
        out[:, own[1] * factor : own[3] * factor, own[0] * factor : own[2] * factor] = result[:, y0:y1, x0:x1]
        progress(index + 1, len(every))
    made = Image.fromarray((out.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    target = (rgb.width * scale, rgb.height * scale)
    return made if made.size == target else made.resize(target, Image.Resampling.LANCZOS)


def run_esrgan(request: GenerateRequest, cache: ModelCache, cancel: threading.Event, send: Callable[[ProgressEvent], None]) -> DoneEvent:
    """An upscale_image job in ESRGAN mode: the upscaler named as the request's model (kept loaded, like a model),
    run over the start image tile by tile, each tile a step; the PNG and its preview written as a generation's are."""
    import time

    from .generate import save_image_files

    init = request.get("initImage")
    spec = request.get("upscale") or {}
    scale = spec.get("scale")
    if not init or scale not in (2, 4):
        raise JobFailed("bad_request", "an ESRGAN upscale needs initImage (the source) and upscale.scale 2 or 4")
    try:
        with Image.open(init["path"]) as source:
            image = source.convert("RGB")
    except OSError as exc:
        raise JobFailed("bad_request", f"the image to upscale {init['path']} could not be read: {exc}") from exc
    if (image.width * scale, image.height * scale) != (request["width"], request["height"]):
        raise JobFailed("bad_request", f"{image.width}x{image.height} at {scale}x is not the {request['width']}x{request['height']} the request asks for")
    started = time.perf_counter()
    path = request["model"]["path"]
    upscaler = cache.upscalers.get(path)
    if upscaler is None:
        upscaler = cache.upscalers[path] = load_upscaler(path, cache.device.device)
        cache.loads += 1
    load_seconds = time.perf_counter() - started
    started = time.perf_counter()
    made = upscale(upscaler, image, scale, cancel, lambda done, total: send(ProgressEvent(type="progress", jobId=request["jobId"], step=done, totalSteps=total)))
    inference_seconds = time.perf_counter() - started
    started = time.perf_counter()
    output = (request.get("outputPaths") or [request["outputPath"]])[0]
    previews = list(request.get("previewPaths") or [None])
    preview = save_image_files(made, request, output, previews[0], (upscaler.name, scale))
    return DoneEvent(
        type="done",
        jobId=request["jobId"],
        outputPath=output,
        width=made.width,
        height=made.height,
        seed=request["seed"],
        family="esrgan",
        scheduler="none",
        device=cache.device.device,
        dtype="float32",
        options={"tiled": True},
        modelLoads=cache.loads,
        stepsRun=len(tiles(image.width, image.height)),
        promptTokens=0,
        previews=[preview],
        timings={"loadSeconds": round(load_seconds, 4), "inferenceSeconds": round(inference_seconds, 4), "saveSeconds": round(time.perf_counter() - started, 4)},
    )
