"""Outpaint: a canvas larger than the start image, the image at (left, top), the new border painted by the
family's inpaint pipeline and the image's own pixels put back afterwards.

The canvas, the mask and the composite are here, apart from the pipeline call, so that inpainting with a user's
mask can reuse them: the mask convention is diffusers' (white, 255, is repainted; black, 0, is kept).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .protocol import GenerateRequest, JobFailed, OutpaintSpec

SIDES = ("left", "right", "top", "bottom")


@dataclass(frozen=True)
class Outpaint:
    """How far the canvas reaches past the start image on each side, in pixels."""

    left: int
    right: int
    top: int
    bottom: int

    @classmethod
    def of(cls, spec: OutpaintSpec) -> Outpaint:
        """The request's outpaint field, checked: four whole numbers, none negative, not all zero."""
        if not isinstance(spec, dict):
            raise JobFailed("bad_request", f"outpaint must be an object with {', '.join(SIDES)} (got {spec!r})")
        values = {}
        for side in SIDES:
            value = spec.get(side)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise JobFailed("bad_request", f"outpaint.{side} must be a whole number of pixels, 0 or more (got {value!r})")
            values[side] = value
        if not any(values.values()):
            raise JobFailed("bad_request", "outpaint extends no side: left, right, top and bottom are all 0")
        return cls(**values)

    def canvas_size(self, source: tuple[int, int]) -> tuple[int, int]:
        return source[0] + self.left + self.right, source[1] + self.top + self.bottom

    def source_box(self, source: tuple[int, int]) -> tuple[int, int, int, int]:
        """Where the start image sits on the canvas: (left, top, right, bottom), right and bottom exclusive."""
        return self.left, self.top, self.left + source[0], self.top + source[1]

    def describe(self) -> str:
        return ", ".join(f"{side} {getattr(self, side)}" for side in SIDES)


def request_outpaint(request: GenerateRequest) -> Outpaint | None:
    """The request's outpaint, or None for a job that is not one; needs the start image (initImage) beside it."""
    spec = request.get("outpaint")
    if spec is None:
        return None
    outpaint = Outpaint.of(spec)
    if not request.get("initImage"):
        raise JobFailed("bad_request", "outpaint needs initImage: the image to extend")
    return outpaint


def check_canvas(outpaint: Outpaint, source: tuple[int, int], width: int, height: int) -> None:
    """The server sends the final canvas size, its rounding already in right and bottom: the sums must agree."""
    canvas = outpaint.canvas_size(source)
    if canvas != (width, height):
        raise JobFailed(
            "bad_request",
            f"outpaint does not add up: the source is {source[0]}x{source[1]}, left {outpaint.left} + right {outpaint.right} "
            f"and top {outpaint.top} + bottom {outpaint.bottom} make {canvas[0]}x{canvas[1]}, but the request asks for {width}x{height}",
        )


def edge_canvas(source: Image.Image, outpaint: Outpaint) -> Image.Image:
    """The canvas with the source at (left, top) and every new pixel a copy of the nearest edge pixel: the inpaint
    pipeline starts from colours that continue the image rather than from a flat fill."""
    pixels = np.asarray(source.convert("RGB"))
    padded = np.pad(pixels, ((outpaint.top, outpaint.bottom), (outpaint.left, outpaint.right), (0, 0)), mode="edge")
    return Image.fromarray(padded)


def outpaint_mask(source: tuple[int, int], outpaint: Outpaint) -> Image.Image:
    """White (repaint) over the new border, black (keep) over the source rectangle, hard-edged. No feathering:
    every family's inpaint pipeline binarizes the mask it is given, so a soft edge would be thrown away, and the
    composite puts the source back exactly in any case."""
    mask = Image.new("L", outpaint.canvas_size(source), 255)
    mask.paste(0, outpaint.source_box(source))
    return mask


def composite(result: Image.Image, source: Image.Image, outpaint: Outpaint) -> Image.Image:
    """The generated canvas with the source's own pixels back in its rectangle, bit for bit (the VAE's round trip
    and the denoising change them slightly otherwise)."""
    expected = outpaint.canvas_size(source.size)
    if result.size != expected:
        raise JobFailed("generation_failed", f"the inpaint pipeline returned {result.width}x{result.height}, not the {expected[0]}x{expected[1]} canvas")
    merged = result.convert("RGB")
    merged.paste(source.convert("RGB"), (outpaint.left, outpaint.top))
    return merged
