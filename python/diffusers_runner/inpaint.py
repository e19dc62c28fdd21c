"""Inpaint with the user's mask: the mask read, fitted to the start image, softened, checked, and the start image's
own pixels put back wherever the mask is black.

The convention is diffusers' (white, 255, is repainted; black, 0, is kept). Every family's inpaint pipeline
binarizes the mask it is given, so the softened edge acts only in the composite, where it blends the repainted
region into the kept one instead of leaving a seam.
"""

from __future__ import annotations

from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from .protocol import GenerateRequest, JobFailed

# A pixel at or above this counts as "repaint" when the mask is checked (as the pipelines binarize it at 0.5).
WHITE = 128
MAX_BLUR = 64


def load_mask(request: GenerateRequest) -> tuple[Image.Image, Image.Image] | None:
    """The request's mask at the job's size, hard (as given, fitted like the start image) and softened by
    mask.blur; None for a job without one. Refuses a mask that covers nothing or everything."""
    spec = request.get("mask")
    if not spec:
        return None
    if not request.get("initImage"):
        raise JobFailed("bad_request", "mask needs initImage: the image whose masked part is repainted")
    blur = spec.get("blur", 0)
    if isinstance(blur, bool) or not isinstance(blur, int) or not 0 <= blur <= MAX_BLUR:
        raise JobFailed("bad_request", f"mask.blur must be a whole number of pixels from 0 to {MAX_BLUR} (got {blur!r})")
    try:
        with Image.open(spec["path"]) as source:
            mask = ImageOps.exif_transpose(source).convert("L")
    except (OSError, UnidentifiedImageError) as exc:
        raise JobFailed("bad_request", f"the mask {spec['path']} could not be read as an image: {exc}") from exc
    size = (request["width"], request["height"])
    # Fitted as the start image is (cropped around the centre to the job's aspect ratio, then resized), so the two
    # line up; bilinear, since Lanczos rings, and a ringing lobe outside the edge would repaint pixels meant to stay.
    if mask.size != size:
        mask = ImageOps.fit(mask, size, Image.Resampling.BILINEAR)
    check_coverage(mask)
    soft = mask.filter(ImageFilter.GaussianBlur(blur)) if blur else mask
    return mask, soft


def check_coverage(mask: Image.Image) -> None:
    histogram = mask.histogram()
    white = sum(histogram[WHITE:])
    if white == 0:
        raise JobFailed("bad_request", "the mask covers nothing: no pixel is white; paint the part to repaint white (black is kept)")
    if white == mask.width * mask.height:
        raise JobFailed("bad_request", "the mask covers the whole image: to repaint all of it, leave the mask out and use init_image with strength")


def composite_masked(result: Image.Image, source: Image.Image, soft_mask: Image.Image) -> Image.Image:
    """The repainted image where the mask is white, the start image where it is black, blended along the softened
    edge: every pixel under a black (0) mask pixel is the start image's, bit for bit."""
    if result.size != source.size:
        raise JobFailed("generation_failed", f"the inpaint pipeline returned {result.width}x{result.height}, not the {source.width}x{source.height} image")
    return Image.composite(result.convert("RGB"), source.convert("RGB"), soft_mask)
