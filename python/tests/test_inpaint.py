"""Inpaint with a user's mask: the masked part repainted by the family's inpaint pipeline (from_pipe, weights
shared), every pixel under black kept bit for bit, the edge softened by mask.blur, masks that cover nothing or
everything refused."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diffusers_runner import tiny_families
from diffusers_runner.device import DeviceChoice, RuntimeOptions
from diffusers_runner.generate import run_generate
from diffusers_runner.infotext import parse_parameters
from diffusers_runner.pipelines import ModelCache
from diffusers_runner.protocol import JobFailed
from tests.test_outpaint import noise_source
from tests.test_runner import generate


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def cache() -> ModelCache:
    options = RuntimeOptions(attention_slicing=False, channels_last=False, compile=False, step_cache="off")
    return ModelCache(DeviceChoice("cpu", torch.float32, options))


def square_mask(path: Path, size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    mask = Image.new("L", size, 0)
    mask.paste(255, box)
    mask.save(path)


def inpaint_request(job_id: str, model_path: str, out: Path, source: Path, mask: Path, blur: int, **overrides) -> dict:
    fields = {"width": 64, "height": 64, "steps": 4, "initImage": {"path": str(source), "strength": 1.0}, "mask": {"path": str(mask), "blur": blur}}
    return generate(job_id, model_path, out, **{**fields, **overrides})


def run(request: dict, cache: ModelCache) -> dict:
    return run_generate(request, cache, threading.Event(), lambda _event: None)


def test_sd15_repaints_the_masked_square_and_keeps_every_other_pixel(tiny_models, tmp_path, cache):
    source_path, mask_path = tmp_path / "source.png", tmp_path / "mask.png"
    source = np.asarray(noise_source(source_path))
    square_mask(mask_path, (64, 64), (16, 16, 48, 48))
    done = run(inpaint_request("hard", tiny_models["sd15"], tmp_path, source_path, mask_path, blur=0), cache)
    result = np.asarray(Image.open(done["outputPath"]))
    inside = np.zeros((64, 64), dtype=bool)
    inside[16:48, 16:48] = True
    assert np.array_equal(result[~inside], source[~inside]), "outside the mask, the input's pixels bit for bit"
    assert not np.array_equal(result[inside], source[inside]), "inside it, repainted"
    assert done["options"]["inpaintComposited"] is True
    settings = parse_parameters(Image.open(done["outputPath"]).text["parameters"])[2]
    assert settings["Mask blur"] == "0"
    model, _ = cache.get(tiny_models["sd15"], None)
    assert type(model.base._inpaint).__name__ == "StableDiffusionInpaintPipeline"
    assert model.base._inpaint.unet is model.base.pipe.unet

    # A mask of another size (128²) is fitted to the image: its square lands on 16..48 again, its edge a pixel soft.
    square_mask(mask_path, (128, 128), (32, 32, 96, 96))
    fitted = np.asarray(Image.open(run(inpaint_request("fitted", tiny_models["sd15"], tmp_path, source_path, mask_path, blur=0), cache)["outputPath"]))
    near = np.zeros((64, 64), dtype=bool)
    near[14:50, 14:50] = True
    assert np.array_equal(fitted[~near], source[~near])
    assert not np.array_equal(fitted[inside], source[inside])


def test_a_soft_edge_blends_near_the_mask_and_keeps_what_lies_beyond_it(tiny_models, tmp_path, cache):
    source_path, mask_path = tmp_path / "source.png", tmp_path / "mask.png"
    source = np.asarray(noise_source(source_path))
    square_mask(mask_path, (64, 64), (24, 24, 40, 40))
    done = run(inpaint_request("soft", tiny_models["sd15"], tmp_path, source_path, mask_path, blur=4), cache)
    result = np.asarray(Image.open(done["outputPath"])).astype(int)
    far = np.ones((64, 64), dtype=bool)
    far[24 - 16 : 40 + 16, 24 - 16 : 40 + 16] = False
    assert np.array_equal(result[far], source[far]), "beyond the blur's reach, the input's pixels"
    ring = np.zeros((64, 64), dtype=bool)
    ring[21:43, 21:43] = True
    ring[24:40, 24:40] = False
    assert (np.abs(result[ring] - source[ring]) > 0).any(), "just outside the square, the softened edge blends"


@pytest.mark.parametrize(
    "box, message",
    [((0, 0, 0, 0), "covers nothing"), ((0, 0, 64, 64), "covers the whole image")],
)
def test_a_mask_that_covers_nothing_or_everything_is_a_bad_request(tiny_models, tmp_path, cache, box, message):
    source_path, mask_path = tmp_path / "source.png", tmp_path / "mask.png"
    noise_source(source_path)
    square_mask(mask_path, (64, 64), box)
    with pytest.raises(JobFailed, match=message) as refused:
        run(inpaint_request("cover", tiny_models["sd15"], tmp_path, source_path, mask_path, blur=0), cache)
    assert refused.value.code == "bad_request"
    assert cache.loads == 0, "refused before any model is loaded"


def test_a_mask_with_an_outpaint_or_without_a_start_image_is_a_bad_request(tiny_models, tmp_path, cache):
    source_path, mask_path = tmp_path / "source.png", tmp_path / "mask.png"
    noise_source(source_path)
    square_mask(mask_path, (64, 64), (8, 8, 24, 24))
    both = inpaint_request("both", tiny_models["sd15"], tmp_path, source_path, mask_path, blur=0, width=96, outpaint={"left": 32, "right": 0, "top": 0, "bottom": 0})
    with pytest.raises(JobFailed, match="do not go together"):
        run(both, cache)
    with pytest.raises(JobFailed, match="mask needs initImage"):
        run(inpaint_request("alone", tiny_models["sd15"], tmp_path, source_path, mask_path, blur=0, initImage=None), cache)


def test_zimage_inpaints_with_its_own_inpaint_pipeline(tmp_path_factory, tmp_path, cache):
    folder = tiny_families.build_all(tmp_path_factory.mktemp("tiny-inpaint"), ["zimage"])["zimage"]
    source_path, mask_path = tmp_path / "source.png", tmp_path / "mask.png"
    source = np.asarray(noise_source(source_path))
    square_mask(mask_path, (64, 64), (16, 16, 48, 48))
    request = inpaint_request("zimage", folder, tmp_path, source_path, mask_path, blur=0, model={"name": "tiny_zimage", "path": folder}, steps=2, cfgScale=0.0, scheduler=None)
    done = run(request, cache)
    result = np.asarray(Image.open(done["outputPath"]))
    inside = np.zeros((64, 64), dtype=bool)
    inside[16:48, 16:48] = True
    assert np.array_equal(result[~inside], source[~inside])
    assert not np.array_equal(result[inside], source[inside])
    model, _ = cache.get(folder, None)
    assert type(model.base._inpaint).__name__ == "ZImageInpaintPipeline"


INPAINT_FAMILIES = ["flux", "flux2klein", "qwenimage", "sd3"]
# The defaults would only log a warning here: Qwen-Image's true CFG needs a negative prompt, klein ignores guidance.
GUIDANCE = {"flux": 3.5, "flux2klein": 1.0, "qwenimage": 1.0, "sd3": 3.0}


@pytest.fixture(scope="module")
def inpaint_family_dirs(tmp_path_factory) -> dict[str, str]:
    return tiny_families.build_all(tmp_path_factory.mktemp("tiny-inpaint-families"), INPAINT_FAMILIES)


@pytest.mark.parametrize("family", INPAINT_FAMILIES)
def test_each_modern_family_with_an_inpaint_class_keeps_what_is_black(inpaint_family_dirs, tmp_path, cache, family):
    source_path, mask_path = tmp_path / "source.png", tmp_path / "mask.png"
    source = np.asarray(noise_source(source_path))
    square_mask(mask_path, (64, 64), (16, 16, 48, 48))
    folder = inpaint_family_dirs[family]
    request = inpaint_request(family, folder, tmp_path, source_path, mask_path, blur=0, model={"name": family, "path": folder}, steps=2, cfgScale=GUIDANCE[family], scheduler=None)
    result = np.asarray(Image.open(run(request, cache)["outputPath"]))
    inside = np.zeros((64, 64), dtype=bool)
    inside[16:48, 16:48] = True
    assert np.array_equal(result[~inside], source[~inside])
    assert not np.array_equal(result[inside], source[inside])


def test_sdxl_inpaints_with_its_inpaint_pipeline(tiny_models, tmp_path, cache):
    source_path, mask_path = tmp_path / "source.png", tmp_path / "mask.png"
    source = np.asarray(noise_source(source_path))
    square_mask(mask_path, (64, 64), (16, 16, 48, 48))
    request = inpaint_request("sdxl", tiny_models["sdxl"], tmp_path, source_path, mask_path, blur=0, model={"name": "sdxl", "path": tiny_models["sdxl"]}, steps=2, scheduler="euler")
    result = np.asarray(Image.open(run(request, cache)["outputPath"]))
    inside = np.zeros((64, 64), dtype=bool)
    inside[16:48, 16:48] = True
    assert np.array_equal(result[~inside], source[~inside]) and not np.array_equal(result[inside], source[inside])
    model, _ = cache.get(tiny_models["sdxl"], None)
    assert type(model.base._inpaint).__name__ == "StableDiffusionXLInpaintPipeline"
