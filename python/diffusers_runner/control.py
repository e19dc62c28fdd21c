"""ControlNet: control images prepared (built-in canny and lineart edges, no extra weights; any other map as it
is), ControlNet weights loaded once and kept, and the family's ControlNet pipeline made from the warm one with
from_pipe, so the base weights are never copied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .protocol import ControlSpec, GenerateRequest, JobFailed

MAX_CONTROLS = 2
# Maps that are edges made here from any picture; every other type is a ready map (a CAD depth or normal render).
PREPROCESSED = ("canny", "lineart")
# ControlNet-Union's control modes (xinsir/controlnet-union-sdxl-1.0): one network, told which kind of map it sees.
UNION_MODES = {"pose": 0, "depth": 1, "scribble": 2, "canny": 3, "lineart": 3, "normal": 4, "segment": 5, "tile": 6}


@dataclass
class PreparedControl:
    spec: ControlSpec
    image: Image.Image


def request_controls(request: GenerateRequest) -> list[PreparedControl]:
    """The request's control entries, checked, with each image read, fitted to the job's size and preprocessed."""
    specs = request.get("control") or []
    if len(specs) > MAX_CONTROLS:
        raise JobFailed("bad_request", f"control takes at most {MAX_CONTROLS} entries (got {len(specs)})")
    size = (request["width"], request["height"])
    prepared = []
    for index, spec in enumerate(specs):
        where = f"control[{index}]"
        for name, low, high in (("strength", 0.0, 2.0), ("start", 0.0, 1.0), ("end", 0.0, 1.0)):
            value = spec.get(name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise JobFailed("bad_request", f"{where}.{name} must be a number from {low:g} to {high:g} (got {value!r})")
        if spec["start"] >= spec["end"]:
            raise JobFailed("bad_request", f"{where}.start ({spec['start']}) must come before end ({spec['end']})")
        try:
            with Image.open(spec["imagePath"]) as source:
                image = ImageOps.exif_transpose(source).convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise JobFailed("bad_request", f"{where}.image {spec['imagePath']} could not be read as an image: {exc}") from exc
        if image.size != size:
            image = ImageOps.fit(image, size, Image.Resampling.LANCZOS)
        if spec.get("preprocess", True) and spec["type"] in PREPROCESSED:
            image = canny_edges(image) if spec["type"] == "canny" else line_art(image)
        prepared.append(PreparedControl(spec, image))
    return prepared


def _grey(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L"), dtype=np.float32)


def _blur(pixels: np.ndarray, sigma: float) -> np.ndarray:
    """A separable Gaussian blur in numpy (no SciPy or OpenCV here)."""
    radius = max(1, int(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps /= taps.sum()
    padded = np.pad(pixels, radius, mode="edge")
    rows = np.apply_along_axis(lambda line: np.convolve(line, taps, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda line: np.convolve(line, taps, mode="valid"), 0, rows)


def _sobel(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    padded = np.pad(pixels, 1, mode="edge")
    gx = (padded[:-2, 2:] + 2 * padded[1:-1, 2:] + padded[2:, 2:]) - (padded[:-2, :-2] + 2 * padded[1:-1, :-2] + padded[2:, :-2])
    gy = (padded[2:, :-2] + 2 * padded[2:, 1:-1] + padded[2:, 2:]) - (padded[:-2, :-2] + 2 * padded[:-2, 1:-1] + padded[:-2, 2:])
    return gx, gy


def canny_edges(image: Image.Image, low: float = 0.1, high: float = 0.2) -> Image.Image:
    """Canny's edges as ControlNet's canny models were trained on: one-pixel white lines on black. Gaussian blur,
    Sobel gradients, non-maximum suppression along the gradient, then hysteresis between `low` and `high` (shares of
    the strongest gradient)."""
    gx, gy = _sobel(_blur(_grey(image), 1.4))
    magnitude = np.hypot(gx, gy)
    peak = magnitude.max()
    if peak == 0:
        return Image.new("RGB", image.size, 0)
    # Non-maximum suppression: keep a pixel only where it beats both neighbours across the edge (4 directions).
    angle = (np.rad2deg(np.arctan2(gy, gx)) + 180) % 180
    padded = np.pad(magnitude, 1)
    center = padded[1:-1, 1:-1]
    neighbours = {
        0: (padded[1:-1, :-2], padded[1:-1, 2:]),
        45: (padded[:-2, 2:], padded[2:, :-2]),
        90: (padded[:-2, 1:-1], padded[2:, 1:-1]),
        135: (padded[:-2, :-2], padded[2:, 2:]),
    }
    sector = (np.round(angle / 45).astype(int) % 4) * 45
    thin = np.zeros_like(magnitude, dtype=bool)
    for direction, (before, after) in neighbours.items():
        here = sector == direction
        thin |= here & (center >= before) & (center >= after)
    strong = thin & (magnitude >= high * peak)
    weak = thin & (magnitude >= low * peak)
    # Hysteresis: weak pixels joined to a strong one (8-connected) are edges too; grown until nothing changes.
    edges = strong
    while True:
        grown = np.pad(edges, 1)
        reach = np.zeros_like(edges)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                reach |= grown[dy : dy + edges.shape[0], dx : dx + edges.shape[1]]
        widened = edges | (weak & reach)
        if (widened == edges).all():
            break
        edges = widened
    return Image.fromarray((edges * 255).astype(np.uint8)).convert("RGB")


def line_art(image: Image.Image) -> Image.Image:
    """Soft line art, white on black as lineart ControlNets take it: the difference of two Gaussian blurs (dark lines
    and edges come out bright), stretched to the full range."""
    grey = _grey(image)
    lines = np.clip(_blur(grey, 2.0) - _blur(grey, 0.7), 0, None)
    peak = lines.max()
    scaled = lines / peak * 255 if peak > 0 else lines
    return Image.fromarray(scaled.astype(np.uint8)).convert("RGB")


class ControlNets:
    """ControlNet weights by folder, loaded on first use and kept on the device with the model."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self._loaded: dict[tuple[str, torch.dtype], Any] = {}

    def get(self, path: str, dtype: torch.dtype) -> Any:
        """The ControlNet in `path`, in the dtype of the model it steers."""
        key = (path, dtype)
        if key not in self._loaded:
            config = Path(path) / "config.json"
            if not config.is_file():
                raise JobFailed("model_load_failed", f"ControlNet {path} has no config.json: give a diffusers ControlNet folder (save_pretrained layout)")
            class_name = json.loads(config.read_text()).get("_class_name", "ControlNetModel")
            model_class = getattr(diffusers, class_name, None)
            if model_class is None or "ControlNet" not in class_name:
                raise JobFailed("model_load_failed", f"ControlNet {path} holds a {class_name}, not a ControlNet this diffusers knows")
            try:
                self._loaded[key] = model_class.from_pretrained(path, torch_dtype=dtype).to(self.device)
            except (OSError, ValueError, RuntimeError) as exc:
                raise JobFailed("model_load_failed", f"ControlNet {path} could not be loaded: {exc}") from exc
        return self._loaded[key]


def is_union(model: Any) -> bool:
    return type(model).__name__ == "ControlNetUnionModel"


def control_kwargs(controls: list[PreparedControl], union: bool, image_key: str, schedule: bool = True) -> dict[str, Any]:
    """The ControlNet arguments of one pipeline call: the control images under `image_key` (`control_image` where
    the pipeline takes one beside a start image or for a union network, else `image`), and each entry's strength
    and its share of the schedule."""
    images = [control.image for control in controls]
    one = len(controls) == 1
    kwargs: dict[str, Any] = {
        "controlnet_conditioning_scale": float(controls[0].spec["strength"]) if one else [float(c.spec["strength"]) for c in controls],
        "control_guidance_start": float(controls[0].spec["start"]) if one else [float(c.spec["start"]) for c in controls],
        "control_guidance_end": float(controls[0].spec["end"]) if one else [float(c.spec["end"]) for c in controls],
    }
    if union:
        # One union network takes every map at once, each with its mode; strength and schedule are the first entry's.
        kwargs.update(
            control_mode=[UNION_MODES.get(c.spec["type"], 3) for c in controls],
            controlnet_conditioning_scale=float(controls[0].spec["strength"]),
            control_guidance_start=float(controls[0].spec["start"]),
            control_guidance_end=float(controls[0].spec["end"]),
        )
        kwargs[image_key] = images
        return kwargs
    kwargs[image_key] = images[0] if one else images
    if not schedule:
        # Z-Image's pipeline takes no start or end (run_generate refused any but the whole schedule).
        del kwargs["control_guidance_start"], kwargs["control_guidance_end"]
    return kwargs


def describe_controls(specs: list[ControlSpec]) -> dict[str, str]:
    """A1111's ControlNet entries in the parameters text: `ControlNet 0: "Module: canny, Model: name, ..."`."""
    return {
        f"ControlNet {index}": (
            f"Module: {spec['type'] if spec.get('preprocess', True) and spec['type'] in PREPROCESSED else 'none'}, "
            f"Model: {Path(spec['path']).name}, Weight: {spec['strength']:g}, Guidance Start: {spec['start']:g}, Guidance End: {spec['end']:g}"
        )
        for index, spec in enumerate(specs)
    }
