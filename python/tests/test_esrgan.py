"""ESRGAN upscalers without spandrel: random RRDBNet state dicts in both key layouts (basicsr's, the original
repository's) and both file kinds load, keep their scale, and upscale tile by tile to exactly what one pass makes."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from diffusers_runner.esrgan import RRDBNet, load_upscaler, tiles, upscale
from diffusers_runner.protocol import JobFailed


def random_state(scale: int = 4, features: int = 8, blocks: int = 2, growth: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = RRDBNet({4: 3, 2: 12, 1: 48}[scale], features, blocks, growth, scale)
    return {name: tensor.clone() for name, tensor in net.state_dict().items()}


def old_layout(state: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    """The same weights as the original ESRGAN repository names them."""
    renamed = {}
    for name, tensor in state.items():
        parts = name.split(".")
        if parts[0] == "body":
            renamed[f"model.1.sub.{parts[1]}.RDB{parts[2][-1]}.conv{parts[3][-1]}.0.{parts[4]}"] = tensor
        else:
            index = {"conv_first": "model.0", "conv_body": f"model.1.sub.{blocks}", "conv_up1": "model.3", "conv_up2": "model.6", "conv_hr": "model.8", "conv_last": "model.10"}[parts[0]]
            renamed[f"{index}.{parts[1]}"] = tensor
    return renamed


def picture(size=(40, 30), seed=1) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def test_both_layouts_and_file_kinds_load_as_the_same_net(tmp_path):
    state = random_state()
    torch.save({"params_ema": state}, tmp_path / "new.pth")
    save_file(old_layout(state, blocks=2), str(tmp_path / "old.safetensors"))
    new, old = load_upscaler(str(tmp_path / "new.pth"), "cpu"), load_upscaler(str(tmp_path / "old.safetensors"), "cpu")
    assert new.scale == old.scale == 4 and new.name == "new"
    x = torch.rand(1, 3, 12, 10)
    assert torch.allclose(new.net(x), old.net(x))


def test_a_2x_net_reads_its_pixel_unshuffled_input(tmp_path):
    save_file(random_state(scale=2), str(tmp_path / "x2.safetensors"))
    upscaler = load_upscaler(str(tmp_path / "x2.safetensors"), "cpu")
    assert upscaler.scale == 2
    made = upscale(upscaler, picture((33, 21)), 2, threading.Event(), lambda *_: None)
    assert made.size == (66, 42)


def test_tiles_cover_the_image_once_and_the_tiled_result_is_the_whole_pass(tmp_path):
    own = [box for box, _ in tiles(600, 300, tile=256, overlap=16)]
    covered = np.zeros((300, 600), dtype=int)
    for left, top, right, bottom in own:
        covered[top:bottom, left:right] += 1
    assert (covered == 1).all()
    torch.save(random_state(blocks=1), tmp_path / "net.pth")
    upscaler = load_upscaler(str(tmp_path / "net.pth"), "cpu")
    image = picture((300, 280))
    steps: list[tuple[int, int]] = []
    tiled = np.asarray(upscale(upscaler, image, 4, threading.Event(), lambda done, total: steps.append((done, total)))).astype(int)
    whole = upscaler.net(torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None])[0].clamp(0, 1)
    whole = (whole.permute(1, 2, 0).detach().numpy() * 255).round().astype(int)
    assert tiled.shape == (1120, 1200, 3)
    # A receptive field wider than the overlap sees a little less at tile seams: within a few levels, mostly exact.
    assert np.abs(tiled - whole).mean() < 1.0
    assert steps == [(done, 4) for done in range(1, 5)], "progress per tile"
    asked_2x = upscale(upscaler, image, 2, threading.Event(), lambda *_: None)
    assert asked_2x.size == (600, 560), "a 4x net asked for 2x is resized down"


def test_a_file_that_is_no_esrgan_or_a_cancel_is_refused(tmp_path):
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(JobFailed, match="not an ESRGAN"):
        load_upscaler(str(tmp_path / "other.safetensors"), "cpu")
    with pytest.raises(JobFailed, match="does not exist"):
        load_upscaler(str(tmp_path / "missing.pth"), "cpu")
    torch.save(random_state(blocks=1), tmp_path / "net.pth")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(JobFailed, match="cancelled"):
        upscale(load_upscaler(str(tmp_path / "net.pth"), "cpu"), picture(), 4, cancel, lambda *_: None)


def test_an_esrgan_job_runs_through_the_runner_with_progress_per_tile_and_a_png_that_says_so(tmp_path):
    from diffusers_runner.device import DeviceChoice, RuntimeOptions
    from diffusers_runner.generate import run_generate
    from diffusers_runner.infotext import parse_parameters
    from diffusers_runner.pipelines import ModelCache
    from tests.test_runner import generate

    torch.save(random_state(blocks=1), tmp_path / "tiny_x4.pth")
    picture((300, 40)).save(tmp_path / "source.png")
    cache = ModelCache(DeviceChoice("cpu", torch.float32, RuntimeOptions(attention_slicing=False, channels_last=False, compile=False, step_cache="off")))
    events: list[dict] = []
    request = generate(
        "up", str(tmp_path / "tiny_x4.pth"), tmp_path, model={"name": "tiny_x4", "path": str(tmp_path / "tiny_x4.pth")},
        width=600, height=80, initImage={"path": str(tmp_path / "source.png"), "strength": 1.0}, upscale={"mode": "esrgan", "scale": 2},
        previewPaths=[str(tmp_path / "up.preview.webp")],
    )
    done = run_generate(request, cache, threading.Event(), events.append)
    assert (done["width"], done["height"], done["family"], done["stepsRun"]) == (600, 80, "esrgan", 2)
    assert [event["step"] for event in events] == [1, 2] and {event["totalSteps"] for event in events} == {2}
    image = Image.open(done["outputPath"])
    assert image.size == (600, 80)
    settings = parse_parameters(image.text["parameters"])[2]
    assert settings["Postprocess upscaler"] == "tiny_x4" and settings["Postprocess upscale by"] == "2"
    assert done["previews"][0]["mimeType"] == "image/webp"
    again = run_generate({**request, "jobId": "up2", "outputPath": str(tmp_path / "up2.png")}, cache, threading.Event(), events.append)
    assert again["modelLoads"] == done["modelLoads"] == 1, "the upscaler stays loaded"
