"""ControlNet: built-in canny and lineart edges, ready maps taken as they are, the family's ControlNet pipeline made
from the warm one with from_pipe (base weights shared), one or two maps, a union network, and refusals."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from diffusers_runner.control import canny_edges, line_art, request_controls
from diffusers_runner.device import DeviceChoice, RuntimeOptions
from diffusers_runner.generate import run_generate
from diffusers_runner.infotext import parse_parameters
from diffusers_runner.pipelines import ModelCache
from diffusers_runner.protocol import JobFailed
from diffusers_runner.tiny_controlnets import build_all as build_controlnets
from tests.test_runner import generate


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def controlnets(tiny_models, tmp_path_factory) -> dict[str, str]:
    return build_controlnets(Path(tiny_models["sd15"]).parent, tmp_path_factory.mktemp("tiny-controlnets"))


@pytest.fixture
def cache() -> ModelCache:
    options = RuntimeOptions(attention_slicing=False, channels_last=False, compile=False, step_cache="off")
    return ModelCache(DeviceChoice("cpu", torch.float32, options))


def drawing(path: Path, shape: str) -> Path:
    """A CAD-like render: a dark outline on white, a box or a circle."""
    image = Image.new("RGB", (64, 64), "white")
    draw = ImageDraw.Draw(image)
    if shape == "box":
        draw.rectangle((12, 16, 52, 48), outline="black", width=3)
    else:
        draw.ellipse((10, 10, 54, 54), outline="black", width=3)
    image.save(path)
    return path


def control(path: str, image: Path, kind: str = "canny", **fields) -> dict:
    return {"path": path, "imagePath": str(image), "type": kind, "strength": 1.0, "start": 0.0, "end": 1.0, "preprocess": True, **fields}


def pixels(done: dict) -> np.ndarray:
    return np.asarray(Image.open(done["outputPath"]))


def run(request: dict, cache: ModelCache) -> dict:
    return run_generate(request, cache, threading.Event(), lambda _event: None)


def test_canny_draws_thin_edges_where_the_picture_changes_and_lineart_lines_white_on_black(tmp_path):
    box = Image.open(drawing(tmp_path / "box.png", "box"))
    edges = np.asarray(canny_edges(box).convert("L"))
    assert set(np.unique(edges)) <= {0, 255}
    assert edges[:, :8].max() == 0 and edges[:8, :].max() == 0, "flat white has no edges"
    assert edges[14:19, 20:44].max() == 255, "the box's top side is an edge"
    assert (edges > 0).mean() < 0.2, "edges are lines, not areas"
    lines = np.asarray(line_art(box).convert("L")).astype(int)
    assert lines[16, 30] > 128 > lines[32, 32], "the outline is bright, the inside dark"
    assert canny_edges(Image.new("RGB", (32, 32), "grey")).getextrema() == ((0, 0), (0, 0), (0, 0))


def test_sd15_follows_a_canny_map_and_another_map_gives_other_pixels(tiny_models, controlnets, tmp_path, cache):
    box, circle = drawing(tmp_path / "box.png", "box"), drawing(tmp_path / "circle.png", "circle")
    base = dict(width=64, height=64, steps=3)
    plain = pixels(run(generate("plain", tiny_models["sd15"], tmp_path, **base), cache))
    boxed_done = run(generate("boxed", tiny_models["sd15"], tmp_path, **base, control=[control(controlnets["sd15_canny"], box)]), cache)
    boxed = pixels(boxed_done)
    circled = pixels(run(generate("circled", tiny_models["sd15"], tmp_path, **base, control=[control(controlnets["sd15_canny"], circle)]), cache))
    again = pixels(run(generate("again", tiny_models["sd15"], tmp_path, **base, control=[control(controlnets["sd15_canny"], box)]), cache))
    assert not np.array_equal(boxed, plain), "control changes the image"
    assert not np.array_equal(boxed, circled), "another control image, other pixels: the map is really wired in"
    assert np.array_equal(boxed, again), "the same map and seed, the same pixels"
    assert boxed_done["options"]["controlNet"] is True
    settings = parse_parameters(Image.open(boxed_done["outputPath"]).text["parameters"])[2]
    assert settings["ControlNet 0"] == "Module: canny, Model: sd15_canny, Weight: 1, Guidance Start: 0, Guidance End: 1"

    model, _ = cache.get(tiny_models["sd15"], None)
    [controlled] = model.base._controlled.values()
    assert type(controlled).__name__ == "StableDiffusionControlNetPipeline"
    assert controlled.unet is model.base.pipe.unet and controlled.vae is model.base.pipe.vae, "from_pipe shares the base weights"
    assert cache.loads == 1


def test_a_ready_map_two_maps_at_once_and_image_to_image_with_control(tiny_models, controlnets, tmp_path, cache):
    box, circle = drawing(tmp_path / "box.png", "box"), drawing(tmp_path / "circle.png", "circle")
    base = dict(width=64, height=64, steps=3)
    depth = control(controlnets["sd15_depth"], circle, "depth")
    alone = pixels(run(generate("depth", tiny_models["sd15"], tmp_path, **base, control=[depth]), cache))
    both_done = run(generate("both", tiny_models["sd15"], tmp_path, **base, control=[control(controlnets["sd15_canny"], box), depth]), cache)
    assert not np.array_equal(pixels(both_done), alone), "the second map steers too"
    settings = parse_parameters(Image.open(both_done["outputPath"]).text["parameters"])[2]
    assert settings["ControlNet 1"].startswith("Module: none, Model: sd15_depth")
    weaker = pixels(run(generate("weak", tiny_models["sd15"], tmp_path, **base, control=[{**depth, "strength": 0.2, "end": 0.5}]), cache))
    assert not np.array_equal(weaker, alone), "strength and end act"

    start = tmp_path / "start.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(start)
    repaint = generate("img2img", tiny_models["sd15"], tmp_path, **{**base, "steps": 4}, initImage={"path": str(start), "strength": 0.5}, control=[depth])
    done = run(repaint, cache)
    assert done["stepsRun"] == 2 and done["options"]["controlNet"] is True
    model, _ = cache.get(tiny_models["sd15"], None)
    assert {key[0] for key in model.base._controlled} == {"StableDiffusionControlNetPipeline", "StableDiffusionControlNetImg2ImgPipeline"}


def test_sdxl_runs_one_controlnet_and_a_union_network_with_two_maps(tiny_models, controlnets, tmp_path, cache):
    box, circle = drawing(tmp_path / "box.png", "box"), drawing(tmp_path / "circle.png", "circle")
    base = dict(model={"name": "tiny_sdxl", "path": tiny_models["sdxl"]}, width=64, height=64, steps=2, scheduler="euler")
    plain = pixels(run(generate("xl", tiny_models["sdxl"], tmp_path, **base), cache))
    canny = pixels(run(generate("xl-canny", tiny_models["sdxl"], tmp_path, **base, control=[control(controlnets["sdxl_canny"], box)]), cache))
    union = pixels(run(generate("xl-union", tiny_models["sdxl"], tmp_path, **base, control=[control(controlnets["sdxl_union"], box), control(controlnets["sdxl_union"], circle, "depth")]), cache))
    assert not np.array_equal(canny, plain) and not np.array_equal(union, plain) and not np.array_equal(union, canny)
    model, _ = cache.get(tiny_models["sdxl"], None)
    assert {key[0] for key in model.base._controlled} == {"StableDiffusionXLControlNetPipeline", "StableDiffusionXLControlNetUnionPipeline"}


@pytest.mark.parametrize(
    "fields, message",
    [({"start": 0.6, "end": 0.4}, r"start \(0.6\) must come before end"), ({"strength": 3}, "strength must be a number from 0 to 2")],
)
def test_a_malformed_control_entry_is_a_bad_request(tmp_path, fields, message):
    box = drawing(tmp_path / "box.png", "box")
    with pytest.raises(JobFailed, match=message) as refused:
        request_controls({"width": 64, "height": 64, "control": [control("/nowhere", box, **fields)]})
    assert refused.value.code == "bad_request"
    with pytest.raises(JobFailed, match="at most 2"):
        request_controls({"width": 64, "height": 64, "control": [control("/x", box)] * 3})


def test_control_with_a_mask_is_a_bad_request_before_any_model_loads(tiny_models, controlnets, tmp_path, cache):
    box = drawing(tmp_path / "box.png", "box")
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (8, 8, 24, 24))
    mask.save(tmp_path / "mask.png")
    request = generate(
        "masked", tiny_models["sd15"], tmp_path, width=64, height=64,
        initImage={"path": str(box), "strength": 1.0}, mask={"path": str(tmp_path / "mask.png"), "blur": 0}, control=[control(controlnets["sd15_canny"], box)],
    )
    with pytest.raises(JobFailed, match="not with mask or outpaint") as refused:
        run(request, cache)
    assert refused.value.code == "bad_request" and cache.loads == 0


def test_flux_follows_a_canny_map_through_its_own_controlnet_pipeline(controlnets, tmp_path_factory, tmp_path, cache):
    from diffusers_runner import tiny_families

    folder = tiny_families.build_all(tmp_path_factory.mktemp("tiny-flux-control"), ["flux"])["flux"]
    box, circle = drawing(tmp_path / "box.png", "box"), drawing(tmp_path / "circle.png", "circle")
    base = dict(model={"name": "tiny_flux", "path": folder}, width=64, height=64, steps=2, cfgScale=3.5, scheduler=None)
    plain = pixels(run(generate("flux", folder, tmp_path, **base), cache))
    boxed = pixels(run(generate("flux-box", folder, tmp_path, **base, control=[control(controlnets["flux_canny"], box)]), cache))
    circled = pixels(run(generate("flux-circle", folder, tmp_path, **base, control=[control(controlnets["flux_canny"], circle)]), cache))
    both = pixels(run(generate("flux-both", folder, tmp_path, **base, control=[control(controlnets["flux_canny"], box), control(controlnets["flux_canny"], circle)]), cache))
    assert not np.array_equal(boxed, plain) and not np.array_equal(boxed, circled) and not np.array_equal(both, boxed)
    model, _ = cache.get(folder, None)
    assert {key[0] for key in model.base._controlled} == {"FluxControlNetPipeline"}
    assert type(next(iter(model.base._controlled.values())).controlnet).__name__ in ("FluxControlNetModel", "FluxMultiControlNetModel")


def test_zimage_follows_one_canny_map_over_the_whole_schedule(controlnets, tmp_path_factory, tmp_path, cache):
    from diffusers_runner import tiny_families

    folder = tiny_families.build_all(tmp_path_factory.mktemp("tiny-zimage-control"), ["zimage"])["zimage"]
    box, circle = drawing(tmp_path / "box.png", "box"), drawing(tmp_path / "circle.png", "circle")
    base = dict(model={"name": "tiny_zimage", "path": folder}, width=64, height=64, steps=2, cfgScale=0.0, scheduler=None)
    plain = pixels(run(generate("z", folder, tmp_path, **base), cache))
    boxed = pixels(run(generate("z-box", folder, tmp_path, **base, control=[control(controlnets["zimage_canny"], box)]), cache))
    circled = pixels(run(generate("z-circle", folder, tmp_path, **base, control=[control(controlnets["zimage_canny"], circle)]), cache))
    assert not np.array_equal(boxed, plain) and not np.array_equal(boxed, circled)
    with pytest.raises(JobFailed, match="steers the whole schedule"):
        run(generate("z-end", folder, tmp_path, **base, control=[control(controlnets["zimage_canny"], box, end=0.5)]), cache)
    with pytest.raises(JobFailed, match="one control map at a time"):
        run(generate("z-two", folder, tmp_path, **base, control=[control(controlnets["zimage_canny"], box), control(controlnets["zimage_canny"], circle)]), cache)
