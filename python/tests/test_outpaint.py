"""Outpaint: the start image at its own size on a larger canvas, the border painted by the family's inpaint pipeline
(made from the warm pipeline with from_pipe, once), the source's pixels put back exactly."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from diffusers_runner import tiny_families
from diffusers_runner.device import DeviceChoice, RuntimeOptions
from diffusers_runner.generate import run_generate
from diffusers_runner.infotext import parse_parameters
from diffusers_runner.outpaint import Outpaint, composite, edge_canvas, outpaint_mask, request_outpaint
from diffusers_runner.pipelines import ModelCache
from diffusers_runner.protocol import JobFailed
from tests.test_runner import Runner, generate


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from more threads, and lose much when another process holds the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, str]:
    # Z-Image has an inpaint pipeline; Chroma has none.
    return tiny_families.build_all(tmp_path_factory.mktemp("tiny-outpaint-families"), ["zimage", "chroma"])


@pytest.fixture
def cache() -> ModelCache:
    options = RuntimeOptions(attention_slicing=False, channels_last=False, compile=False, step_cache="off")
    return ModelCache(DeviceChoice("cpu", torch.float32, options))


@pytest.fixture
def from_pipe_calls(monkeypatch) -> list[str]:
    """Every DiffusionPipeline.from_pipe call, by the class it makes."""
    calls: list[str] = []
    original = DiffusionPipeline.from_pipe.__func__

    def counting(cls, pipeline, **kwargs):
        calls.append(cls.__name__)
        return original(cls, pipeline, **kwargs)

    monkeypatch.setattr(DiffusionPipeline, "from_pipe", classmethod(counting))
    return calls


def noise_source(path: Path, size: tuple[int, int] = (64, 64), seed: int = 3) -> Image.Image:
    """A source with a different colour at every pixel, so an exact copy is told from an approximate one."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    image.save(path)
    return image


def outpaint_request(job_id: str, model_path: str, out: Path, source: Path, sides: dict[str, int], width: int, height: int, **overrides) -> dict:
    fields = {
        "width": width,
        "height": height,
        "steps": 4,
        "initImage": {"path": str(source), "strength": 0.75},
        "outpaint": {"left": 0, "right": 0, "top": 0, "bottom": 0, **sides},
    }
    return generate(job_id, model_path, out, **{**fields, **overrides})


def run(request: dict, cache: ModelCache) -> tuple[dict, list[dict]]:
    progress: list[dict] = []
    done = run_generate(request, cache, threading.Event(), progress.append)
    return done, progress


def border_differs(result: np.ndarray, plain: np.ndarray, box: tuple[int, int, int, int]) -> bool:
    outside = np.ones(result.shape[:2], dtype=bool)
    left, top, right, bottom = box
    outside[top:bottom, left:right] = False
    return not np.array_equal(result[outside], plain[outside])


def test_the_canvas_extends_the_edges_and_the_mask_keeps_the_source_black(tmp_path):
    source = noise_source(tmp_path / "source.png", (5, 4))
    sides = Outpaint(left=3, right=1, top=0, bottom=2)
    canvas = np.asarray(edge_canvas(source, sides))
    assert canvas.shape == (4 + 2, 5 + 3 + 1, 3)
    pixels = np.asarray(source)
    assert np.array_equal(canvas[0:4, 3:8], pixels)
    assert np.array_equal(canvas[0:4, 0], pixels[:, 0]) and np.array_equal(canvas[0:4, 8], pixels[:, -1]), "left and right repeat the edge columns"
    assert np.array_equal(canvas[5, 3:8], pixels[-1]) and np.array_equal(canvas[5, 0], pixels[-1, 0]), "bottom and corners repeat the edge row"
    mask = np.array(outpaint_mask(source.size, sides))
    assert mask.shape == canvas.shape[:2] and mask.dtype == np.uint8
    assert (mask[0:4, 3:8] == 0).all(), "the source rectangle is kept"
    mask[0:4, 3:8] = 255
    assert (mask == 255).all(), "everything else is repainted"
    painted = Image.new("RGB", (9, 6), (1, 2, 3))
    assert np.array_equal(np.asarray(composite(painted, source, sides))[0:4, 3:8], pixels)


@pytest.mark.parametrize(
    "field, message",
    [
        ({"left": -8, "right": 0, "top": 0, "bottom": 0}, "outpaint.left must be a whole number"),
        ({"left": 8.5, "right": 0, "top": 0, "bottom": 0}, "outpaint.left must be a whole number"),
        ({"left": 8, "right": 0, "top": 0}, "outpaint.bottom must be a whole number"),
        ({"left": 0, "right": 0, "top": 0, "bottom": 0}, "extends no side"),
    ],
)
def test_a_malformed_outpaint_is_a_bad_request(field, message):
    with pytest.raises(JobFailed, match=message) as refused:
        request_outpaint({"outpaint": field, "initImage": {"path": "x.png", "strength": 1.0}})
    assert refused.value.code == "bad_request"


def test_an_outpaint_without_a_start_image_is_a_bad_request():
    with pytest.raises(JobFailed, match="needs initImage") as refused:
        request_outpaint({"outpaint": {"left": 8, "right": 0, "top": 0, "bottom": 0}, "initImage": None})
    assert refused.value.code == "bad_request"
    assert request_outpaint({"outpaint": None, "initImage": None}) is None


def test_sd15_outpaints_the_border_keeps_the_source_exactly_and_reuses_one_inpaint_pipeline(tiny_models, tmp_path, cache, from_pipe_calls):
    source_path = tmp_path / "source.png"
    source = noise_source(source_path)
    sides = {"left": 32, "bottom": 64}
    request = outpaint_request("out1", tiny_models["sd15"], tmp_path, source_path, sides, width=96, height=128)
    done, progress = run(request, cache)
    assert (done["width"], done["height"]) == (96, 128)
    image = Image.open(done["outputPath"])
    assert image.size == (96, 128) and image.mode == "RGB"
    result = np.asarray(image)
    assert np.array_equal(result[0:64, 32:96], np.asarray(source)), "the source rectangle holds the input's pixels, bit for bit"
    plain = np.asarray(edge_canvas(source, Outpaint(left=32, right=0, top=0, bottom=64)))
    assert border_differs(result, plain, (32, 0, 96, 64)), "the border was generated, not left as the edge extension"
    assert done["options"]["outpaintComposited"] is True
    # strength 0.75 of 4 steps runs 3, and every progress event says so from the first
    assert done["stepsRun"] == 3 and [event["step"] for event in progress] == [1, 2, 3]
    assert {event["totalSteps"] for event in progress} == {3}
    _, _, settings = parse_parameters(image.text["parameters"])
    assert settings["Outpaint"] == "left 32, right 0, top 0, bottom 64"
    assert settings["Size"] == "96x128" and settings["Denoising strength"] == "0.75"

    model, _ = cache.get(tiny_models["sd15"], None)
    inpaint = model.base._inpaint
    assert type(inpaint).__name__ == "StableDiffusionInpaintPipeline"
    assert inpaint.unet is model.base.pipe.unet and inpaint.vae is model.base.pipe.vae, "from_pipe shares the weights"
    loads = done["modelLoads"]

    again, _ = run({**request, "jobId": "out2", "seed": 8, "outputPath": str(tmp_path / "out2.png")}, cache)
    assert again["modelLoads"] == loads == 1, "a second outpaint loads nothing"
    assert from_pipe_calls == ["StableDiffusionInpaintPipeline"], "the inpaint pipeline is made once and kept"
    assert model.base._inpaint is inpaint
    second = np.asarray(Image.open(again["outputPath"]))
    assert np.array_equal(second[0:64, 32:96], np.asarray(source))
    assert not np.array_equal(second, result), "another seed paints another border"

    # A plain job afterwards runs the text pipeline as before, without the outpaint's record.
    text, _ = run(generate("text", tiny_models["sd15"], tmp_path, steps=2), cache)
    assert "outpaintComposited" not in text["options"] and text["modelLoads"] == 1
    assert "Outpaint" not in parse_parameters(Image.open(text["outputPath"]).text["parameters"])[2]


def test_an_outpaint_whose_sizes_do_not_add_up_is_a_bad_request_naming_them(tiny_models, tmp_path, cache):
    source_path = tmp_path / "source.png"
    noise_source(source_path)
    request = outpaint_request("mismatch", tiny_models["sd15"], tmp_path, source_path, {"left": 32, "bottom": 64}, width=104, height=128)
    with pytest.raises(JobFailed) as refused:
        run(request, cache)
    assert refused.value.code == "bad_request"
    message = str(refused.value)
    assert "64x64" in message and "96x128" in message and "104x128" in message, message
    assert cache.loads == 0, "refused before any model is loaded"


def test_zimage_outpaints_with_its_inpaint_pipeline_and_counts_its_own_steps(family_dirs, tmp_path, cache, from_pipe_calls):
    source_path = tmp_path / "source.png"
    source = noise_source(source_path)
    # strength 0.5 of 3 steps: a flow-matching pipeline skips int(3 - 1.5) = 1 step and runs 2 (SD would run 1)
    request = outpaint_request(
        "zimage", family_dirs["zimage"], tmp_path, source_path, {"left": 32, "bottom": 64}, width=96, height=128,
        model={"name": "tiny_zimage", "path": family_dirs["zimage"]}, steps=3, cfgScale=0.0, scheduler=None,
        initImage={"path": str(source_path), "strength": 0.5},
    )
    done, progress = run(request, cache)
    image = np.asarray(Image.open(done["outputPath"]))
    assert image.shape == (128, 96, 3)
    assert np.array_equal(image[0:64, 32:96], np.asarray(source))
    plain = np.asarray(edge_canvas(source, Outpaint(left=32, right=0, top=0, bottom=64)))
    assert border_differs(image, plain, (32, 0, 96, 64))
    assert done["options"]["outpaintComposited"] is True
    assert done["stepsRun"] == 2 and {event["totalSteps"] for event in progress} == {2}
    again, _ = run({**request, "jobId": "zimage2", "outputPath": str(tmp_path / "zimage2.png")}, cache)
    assert again["modelLoads"] == done["modelLoads"] == 1
    assert from_pipe_calls == ["ZImageInpaintPipeline"]


def test_a_family_without_an_inpaint_pipeline_cannot_outpaint(family_dirs, tmp_path, cache):
    source_path = tmp_path / "source.png"
    noise_source(source_path)
    request = outpaint_request(
        "chroma", family_dirs["chroma"], tmp_path, source_path, {"left": 32, "bottom": 64}, width=96, height=128,
        model={"name": "tiny_chroma", "path": family_dirs["chroma"]}, scheduler=None, cfgScale=3.0,
    )
    with pytest.raises(JobFailed, match="Chroma cannot outpaint") as refused:
        run(request, cache)
    assert refused.value.code == "bad_request"
    assert not Path(request["outputPath"]).exists()


def test_the_runner_process_outpaints_and_answers_a_bad_size_with_an_error_event(tiny_models, tmp_path):
    """Over the wire, as the server drives it: the outpaint field parses, a mismatch ends the job, the runner goes on."""
    source_path = tmp_path / "source.png"
    source = noise_source(source_path, (64, 64))
    runner = Runner()
    try:
        assert runner.next_event()["type"] == "ready"
        runner.send(outpaint_request("wire-bad", tiny_models["sd15"], tmp_path, source_path, {"right": 16}, width=64, height=64))
        error, _ = runner.until("wire-bad")
        assert error["type"] == "error" and error["code"] == "bad_request" and "80x64" in error["message"], error
        runner.send(outpaint_request("wire", tiny_models["sd15"], tmp_path, source_path, {"right": 16, "top": 8}, width=80, height=72))
        done, progress = runner.until("wire")
        assert done["type"] == "done", done
        assert (done["width"], done["height"]) == (80, 72) and done["options"]["outpaintComposited"] is True
        assert np.array_equal(np.asarray(Image.open(done["outputPath"]))[8:72, 0:64], np.asarray(source))
        assert progress[-1]["totalSteps"] == done["stepsRun"] == 3
        assert runner.close() == 0
    finally:
        if runner.process.poll() is None:
            runner.process.kill()
