"""Small WebP previews written beside each PNG: what a chat client or the gallery shows instead of the full image."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from PIL import Image

from .files import write_whole
from .protocol import PreviewInfo

# Long side first, then quality: a real picture fits at the first try (20-50 KB at 512 px); noise, the worst case,
# steps down until it fits. Base64 in an MCP result adds a third, so 64 KB keeps one preview near 86 KB on the wire.
PREVIEW_MAX_BYTES = 64_000
PREVIEW_SIDES = (512, 384, 256)
PREVIEW_QUALITIES = (80, 65, 50)


def encode_preview(image: Image.Image, max_bytes: int = PREVIEW_MAX_BYTES) -> tuple[bytes, tuple[int, int]]:
    """The largest, best preview within max_bytes (the smallest try when none fits) and its size."""
    encoded, size = b"", (0, 0)
    for side in PREVIEW_SIDES:
        small = image.convert("RGB")
        small.thumbnail((side, side), Image.Resampling.LANCZOS)
        for quality in PREVIEW_QUALITIES:
            buffer = io.BytesIO()
            small.save(buffer, format="WEBP", quality=quality, method=4)
            encoded, size = buffer.getvalue(), small.size
            if len(encoded) <= max_bytes:
                return encoded, size
    return encoded, size


def write_preview(image: Image.Image, path: str) -> PreviewInfo:
    encoded, (width, height) = encode_preview(image)
    # Whole, like the PNG: the server never uploads half a preview.
    write_whole(path, lambda partial: Path(partial).write_bytes(encoded))
    return PreviewInfo(path=path, mimeType="image/webp", width=width, height=height, bytes=len(encoded))


def main(argv: list[str]) -> int:
    """`python -m diffusers_runner.previews PNG WEBP`: the preview of an image another engine made (Pillow only, no torch)."""
    if len(argv) != 2:
        print("usage: python -m diffusers_runner.previews IMAGE.png PREVIEW.webp", file=sys.stderr)
        return 2
    with Image.open(argv[0]) as image:
        info = write_preview(image, argv[1])
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
