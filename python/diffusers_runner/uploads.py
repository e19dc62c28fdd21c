"""An image a user brings (a pasted data: URL, a local file, a fetched URL), checked by decoding it and kept as a PNG.

Run alone by the server (Pillow only, no torch): `python -m diffusers_runner.uploads IN OUT.png PREVIEW.webp`
prints `{"width", "height", "format", "mode", "coverage", "preview"}`, or exits 3 with one line on stderr saying what is wrong.
"""

from __future__ import annotations

import json
import sys
import warnings

from PIL import Image, ImageOps

from .files import write_whole
from .previews import write_preview

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
# A 20 MB file can still hold a decompression bomb: past this many pixels nothing is decoded. 40 MP is more than a
# 7952x5304 camera frame and 4.8x the largest image this server makes (2048x2048 x4 upscale is refused anyway).
MAX_PIXELS = 40_000_000
# The modes a pipeline and a mask reader take as they are; anything else (CMYK, P, I;16...) becomes RGB or RGBA.
KEPT_MODES = ("RGB", "RGBA", "L", "LA")


class BadImage(Exception):
    """The bytes are not an image this server takes: the message says why, for the person who sent it."""


def normalize(source: str, png_path: str, preview_path: str) -> dict[str, object]:
    """Decodes `source` whole (a truncated or forged file fails here, not in a job), turns it upright by its EXIF
    orientation, drops its metadata and writes it as a PNG with a preview."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(source, formats=ACCEPTED_FORMATS) as opened:
                found = opened.format
                width, height = opened.size
                if width * height > MAX_PIXELS:
                    raise BadImage(f"the image is {width}x{height} ({width * height:,} pixels); at most {MAX_PIXELS:,} are taken")
                opened.load()
                image = ImageOps.exif_transpose(opened)
        except BadImage:
            raise
        except (Image.UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise BadImage(f"not a PNG, JPEG or WebP image ({exc})") from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise BadImage(f"the image cannot be decoded ({exc})") from exc
    if image.mode not in KEPT_MODES:
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    write_whole(png_path, lambda partial: image.save(partial, format="PNG"))
    preview = write_preview(image, preview_path)
    # The share of white (>= 128) pixels, should the image be used as a mask: 0 or 1 is refused before queueing.
    histogram = image.convert("L").histogram()
    coverage = sum(histogram[128:]) / (image.width * image.height)
    return {
        "width": image.width,
        "height": image.height,
        "format": found,
        "mode": image.mode,
        "coverage": coverage,
        "preview": {key: preview[key] for key in ("mimeType", "width", "height", "bytes")},
    }


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print("usage: python -m diffusers_runner.uploads IMAGE OUT.png PREVIEW.webp", file=sys.stderr)
        return 2
    try:
        facts = normalize(*argv)
    except BadImage as exc:
        print(str(exc), file=sys.stderr)
        return 3
    print(json.dumps(facts))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
