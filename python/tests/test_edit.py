"""Instruction edits: FLUX.1 Kontext edits one image, FLUX.2 klein takes reference images; the image is fitted to
the job's size, the instruction and the image both steer the result, and what a family cannot do is refused."""

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


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, str]:
    return tiny_families.build_all(tmp_path_factory.mktemp("tiny-edit-families"), ["fluxkontext", "flux2klein"])


@pytest.fixture
def cache() -> ModelCache:
    options = RuntimeOptions(attention_slicing=False, channels_last=False, compile=False, step_cache="off")
    return ModelCache(DeviceChoice("cpu", torch.float32, options))


def edit_request(job_id: str, folder: str, out: Path, images: list[Path], prompt: str = "make the sky red", **overrides) -> dict:
    fields = {"model": {"name": job_id, "path": folder}, "width": 64, "height": 64, "steps": 2, "cfgScale": 2.5, "scheduler": None, "prompt": prompt, "edit": {"images": [str(image) for image in images]}}
    return generate(job_id, folder, out, **{**fields, **overrides})


def run(request: dict, cache: ModelCache) -> np.ndarray:
    done = run_generate(request, cache, threading.Event(), lambda _event: None)
    return np.asarray(Image.open(done["outputPath"]))


def test_kontext_edits_one_image_steered_by_both_the_image_and_the_instruction(family_dirs, tmp_path, cache):
    first, second = noise_source(tmp_path / "a.png", (96, 80), seed=1), noise_source(tmp_path / "b.png", (64, 64), seed=2)
    folder = family_dirs["fluxkontext"]
    edited = run(edit_request("k1", folder, tmp_path, [tmp_path / "a.png"]), cache)
    assert edited.shape == (64, 64, 3), "fitted to the job's size"
    other_image = run(edit_request("k2", folder, tmp_path, [tmp_path / "b.png"]), cache)
    other_words = run(edit_request("k3", folder, tmp_path, [tmp_path / "a.png"], prompt="make it night"), cache)
    again = run(edit_request("k4", folder, tmp_path, [tmp_path / "a.png"]), cache)
    assert not np.array_equal(edited, other_image), "the image steers the edit"
    assert not np.array_equal(edited, other_words), "the instruction steers the edit"
    assert np.array_equal(edited, again)
    settings = parse_parameters(Image.open(tmp_path / "k1.png").text["parameters"])[2]
    assert settings["Edit images"] == "1"
    assert first.size == (96, 80) and second.size == (64, 64)
    with pytest.raises(JobFailed, match="takes 1 image"):
        run(edit_request("k5", folder, tmp_path, [tmp_path / "a.png", tmp_path / "b.png"]), cache)


def test_klein_takes_reference_images(family_dirs, tmp_path, cache):
    noise_source(tmp_path / "a.png", seed=1)
    noise_source(tmp_path / "b.png", seed=2)
    folder = family_dirs["flux2klein"]
    base = dict(cfgScale=1.0, steps=2)
    one = run(edit_request("r1", folder, tmp_path, [tmp_path / "a.png"], **base), cache)
    two = run(edit_request("r2", folder, tmp_path, [tmp_path / "a.png", tmp_path / "b.png"], **base), cache)
    assert not np.array_equal(one, two), "a reference image steers too"


def test_an_edit_on_a_family_that_does_not_edit_or_beside_a_start_image_is_a_bad_request(tiny_models, tmp_path, cache):
    noise_source(tmp_path / "a.png")
    request = edit_request("sd", tiny_models["sd15"], tmp_path, [tmp_path / "a.png"], cfgScale=7.0, scheduler="euler_a")
    with pytest.raises(JobFailed, match="does not edit images by instruction"):
        run(request, cache)
    both = {**request, "initImage": {"path": str(tmp_path / "a.png"), "strength": 0.5}}
    with pytest.raises(JobFailed, match="an edit takes its images alone"):
        run(both, cache)


def test_qwen_image_edit_takes_pictures_through_its_vision_encoder_and_makes_nothing_from_text(tmp_path_factory, tmp_path, cache):
    folder = tiny_families.build_all(tmp_path_factory.mktemp("tiny-qwen-edit"), ["qwenimageedit"])["qwenimageedit"]
    noise_source(tmp_path / "a.png", seed=1)
    noise_source(tmp_path / "b.png", seed=2)
    base = dict(cfgScale=1.0, steps=2)
    one = run(edit_request("q1", folder, tmp_path, [tmp_path / "a.png"], **base), cache)
    two = run(edit_request("q2", folder, tmp_path, [tmp_path / "a.png", tmp_path / "b.png"], **base), cache)
    words = run(edit_request("q3", folder, tmp_path, [tmp_path / "a.png"], prompt="make it night", **base), cache)
    assert one.shape == (64, 64, 3)
    assert not np.array_equal(one, two) and not np.array_equal(one, words)
    with pytest.raises(JobFailed, match="edits images only"):
        run(generate("q4", folder, tmp_path, model={"name": "q", "path": folder}, width=64, height=64, steps=2, cfgScale=1.0, scheduler=None), cache)
