"""Previews: small enough for a chat result whatever the picture, as large as that allows, written whole."""

import io
import random

from PIL import Image

from diffusers_runner.previews import PREVIEW_MAX_BYTES, encode_preview, write_preview


def noise(width: int, height: int) -> Image.Image:
    rng = random.Random(7)
    return Image.frombytes("RGB", (width, height), bytes(rng.getrandbits(8) for _ in range(width * height * 3)))


def gradient(width: int, height: int) -> Image.Image:
    return Image.linear_gradient("L").resize((width, height)).convert("RGB")


def test_a_smooth_picture_keeps_512_pixels_on_its_long_side_and_its_aspect_ratio():
    encoded, size = encode_preview(gradient(1216, 832))
    assert size == (512, 350)
    assert Image.open(io.BytesIO(encoded)).format == "WEBP"
    assert len(encoded) < 20_000


def test_noise_steps_down_until_it_fits_the_byte_budget():
    encoded, size = encode_preview(noise(1024, 1024))
    assert len(encoded) <= PREVIEW_MAX_BYTES
    assert max(size) < 512, "full-size noise does not fit 64 KB at 512 px, so the preview got smaller"
    assert Image.open(io.BytesIO(encoded)).size == size


def test_a_small_image_is_not_enlarged(tmp_path):
    info = write_preview(gradient(64, 48), str(tmp_path / "sub" / "p.webp"))
    assert (info["width"], info["height"]) == (64, 48)
    assert info["bytes"] == (tmp_path / "sub" / "p.webp").stat().st_size
    assert not (tmp_path / "sub" / "p.webp.partial").exists()


def test_the_command_line_previews_an_image_another_engine_made(tmp_path):
    import json
    import subprocess
    import sys

    gradient(800, 600).save(tmp_path / "a1111.png")
    done = subprocess.run(
        [sys.executable, "-m", "diffusers_runner.previews", str(tmp_path / "a1111.png"), str(tmp_path / "a1111.preview.webp")],
        capture_output=True,
        text=True,
        check=True,
    )
    info = json.loads(done.stdout)
    assert info == {"path": str(tmp_path / "a1111.preview.webp"), "mimeType": "image/webp", "width": 512, "height": 384, "bytes": (tmp_path / "a1111.preview.webp").stat().st_size}
