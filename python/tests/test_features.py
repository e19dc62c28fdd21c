"""Batches, image-to-image, the refiner's polish pass and LoRAs, through the runner process as the server drives it."""

import os

import pytest
from PIL import Image, ImageStat

from tests.test_runner import Runner, generate


@pytest.fixture(scope="module")
def runner():
    process = Runner()
    assert process.next_event()["type"] == "ready"
    yield process
    if process.process.poll() is None:
        process.process.kill()


def run(runner: Runner, request: dict) -> tuple[dict, list[dict]]:
    runner.send(request)
    return runner.until(request["jobId"])


def pixels(path) -> bytes:
    return Image.open(path).tobytes()


def test_a_batch_writes_one_png_per_seed_each_the_image_that_seed_gives_alone(runner, tiny_models, tmp_path):
    paths = [str(tmp_path / f"batch{index}.png") for index in range(3)]
    done, progress = run(runner, generate("batch", tiny_models["sd15"], tmp_path, seed=2**32 - 2, outputPath=paths[0], outputPaths=paths))
    assert done["type"] == "done", done
    assert done["stepsRun"] == 9 and [event["step"] for event in progress] == list(range(1, 10))
    assert {event["totalSteps"] for event in progress} == {9}
    seeds = [Image.open(path).text["parameters"].split("Seed: ")[1].split(",")[0] for path in paths]
    assert seeds == [str(2**32 - 2), str(2**32 - 1), "0"], "consecutive seeds, wrapping at 2**32"
    assert len({pixels(path) for path in paths}) == 3
    alone, _ = run(runner, generate("alone", tiny_models["sd15"], tmp_path, seed=2**32 - 1))
    assert pixels(alone["outputPath"]) == pixels(paths[1]), "image 2 of the batch is what its seed makes on its own"


def test_image_to_image_starts_from_the_image_and_fits_another_aspect_ratio(runner, tiny_models, tmp_path):
    source = tmp_path / "source.png"
    Image.new("RGB", (400, 250), (200, 30, 30)).save(source)
    plain, _ = run(runner, generate("plain", tiny_models["sd15"], tmp_path, steps=4))
    light, progress = run(runner, generate("light", tiny_models["sd15"], tmp_path, steps=4, initImage={"path": str(source), "strength": 0.5}))
    assert light["type"] == "done", light
    assert (light["width"], light["height"]) == (256, 256), "a 400x250 start image is cropped and resized to the asked size"
    assert light["stepsRun"] == 2 and progress[-1]["totalSteps"] == 2, "strength 0.5 of 4 steps runs 2"
    assert pixels(light["outputPath"]) != pixels(plain["outputPath"])
    # A light touch stays close to the start image; text-to-image noise does not.
    red = lambda path: ImageStat.Stat(Image.open(path).convert("RGB")).mean[0]
    assert red(light["outputPath"]) > red(plain["outputPath"])
    parameters = Image.open(light["outputPath"]).text["parameters"]
    assert "Denoising strength: 0.5" in parameters

    (tmp_path / "broken.png").write_bytes(b"not an image")
    error, _ = run(runner, generate("broken", tiny_models["sd15"], tmp_path, initImage={"path": str(tmp_path / "broken.png"), "strength": 0.5}))
    assert error["code"] == "bad_request" and "could not be read as an image" in error["message"]


def test_the_polish_pass_refines_the_finished_image(runner, tiny_models, tmp_path):
    model = {"name": "tiny_sdxl", "path": tiny_models["sdxl"], "refinerPath": tiny_models["sdxl_refiner"]}
    base, _ = run(runner, generate("base", tiny_models["sdxl"], tmp_path, model=model, steps=5, scheduler="euler"))
    polish = {"steps": 2, "cfgScale": 5.0, "switchAt": 0.8, "mode": "polish", "strength": 0.3}
    polished, progress = run(runner, generate("polished", tiny_models["sdxl"], tmp_path, model=model, steps=5, scheduler="euler", refiner=polish))
    assert polished["type"] == "done", polished
    assert polished["stepsRun"] == 5 + 2 and progress[-1]["totalSteps"] == 7
    assert pixels(polished["outputPath"]) != pixels(base["outputPath"])
    assert "Refiner mode: polish" in Image.open(polished["outputPath"]).text["parameters"]


def test_a_lora_changes_the_image_and_the_next_job_without_it_is_untouched(runner, tiny_models, tmp_path):
    lora = {"name": "detail", "path": os.path.join(tiny_models["loras"], "tiny_sd15_detail.safetensors"), "weight": 1.0}
    before, _ = run(runner, generate("before", tiny_models["sd15"], tmp_path))
    with_lora, _ = run(runner, generate("with", tiny_models["sd15"], tmp_path, loras=[lora]))
    half, _ = run(runner, generate("half", tiny_models["sd15"], tmp_path, loras=[{**lora, "weight": 0.5}]))
    after, _ = run(runner, generate("after", tiny_models["sd15"], tmp_path))
    assert with_lora["type"] == half["type"] == "done", (with_lora, half)
    assert pixels(with_lora["outputPath"]) != pixels(before["outputPath"])
    assert pixels(half["outputPath"]) not in (pixels(with_lora["outputPath"]), pixels(before["outputPath"])), "the weight matters"
    assert pixels(after["outputPath"]) == pixels(before["outputPath"]), "a job without the LoRA gets the plain model's pixels"
    assert "Lora weights: \"detail: 1\"" in Image.open(with_lora["outputPath"]).text["parameters"]

    wrong = {"name": "xl", "path": os.path.join(tiny_models["loras"], "tiny_sdxl_detail.safetensors"), "weight": 1.0}
    error, _ = run(runner, generate("wrong", tiny_models["sd15"], tmp_path, loras=[wrong]))
    assert error["code"] == "bad_request" and "does not fit this sd15 model" in error["message"]
    again, _ = run(runner, generate("again", tiny_models["sd15"], tmp_path))
    assert pixels(again["outputPath"]) == pixels(before["outputPath"]), "a LoRA that failed to load leaves nothing behind"


def test_the_polish_schedule_runs_exactly_the_steps_asked_for():
    from diffusers_runner.generate import _strength_schedule_length

    for steps in range(1, 11):
        for strength in (0.1, 0.25, 0.3, 0.35, 0.5, 0.9):
            length = _strength_schedule_length(steps, strength)
            assert int(length * strength) == steps, (steps, strength, length)


def _config_only_copy(model_dir: str, target) -> str:
    """A diffusers folder's configs and tokenizer files without its weights, as models.yaml's `config:` may name."""
    import shutil
    from pathlib import Path

    for source in Path(model_dir).rglob("*"):
        if source.is_file() and source.suffix in (".json", ".txt"):
            destination = target / source.relative_to(model_dir)
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, destination)
    return str(target)


@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_a_single_file_checkpoint_makes_the_pixels_its_folder_makes(runner, tiny_models, tmp_path, family):
    from tests.single_file_checkpoint import write_single_file

    checkpoint = write_single_file(tiny_models[family], tmp_path / f"{family}.safetensors")
    config = _config_only_copy(tiny_models[family], tmp_path / "config")
    folder, _ = run(runner, generate(f"folder-{family}", tiny_models[family], tmp_path, scheduler="euler"))
    single, _ = run(runner, generate(f"file-{family}", str(checkpoint), tmp_path, scheduler="euler", model={"name": "file", "path": str(checkpoint), "configPath": config}))
    assert single["type"] == "done", single
    assert single["family"] == family
    assert pixels(single["outputPath"]) == pixels(folder["outputPath"])


def test_the_refiner_shares_the_bases_second_text_encoder_and_vae(tiny_models):
    import torch

    from diffusers_runner.device import DeviceChoice
    from diffusers_runner.pipelines import ModelCache

    model, _ = ModelCache(DeviceChoice("cpu", torch.float32)).get(tiny_models["sdxl"], tiny_models["sdxl_refiner"])
    base, refiner = model.base.pipe, model.refiner.pipe
    assert refiner.text_encoder_2 is base.text_encoder_2 and refiner.vae is base.vae
    # What that saves at full size: SDXL's bigG text encoder (694,659,840 parameters) and VAE (83,653,863), about
    # 1.6 GB in float16 and 3.1 GB in float32 (MPS) that a refiner loaded on its own would hold a second copy of.
    count = lambda pipe: sum(p.numel() for name in ("unet", "vae", "text_encoder", "text_encoder_2") if getattr(pipe, name, None) is not None for p in getattr(pipe, name).parameters())
    distinct = {id(p): p.numel() for pipe in (base, refiner) for name in ("unet", "vae", "text_encoder", "text_encoder_2") if getattr(pipe, name, None) is not None for p in getattr(pipe, name).parameters()}
    saved = count(base) + count(refiner) - sum(distinct.values())
    assert saved == sum(p.numel() for p in base.text_encoder_2.parameters()) + sum(p.numel() for p in base.vae.parameters())


def test_each_image_of_a_batch_gets_the_preview_asked_for(runner, tiny_models, tmp_path):
    paths = [str(tmp_path / f"shown{index}.png") for index in range(2)]
    previews = [str(tmp_path / f"shown{index}.preview.webp") for index in range(2)]
    done, _ = run(runner, generate("shown", tiny_models["sd15"], tmp_path, outputPath=paths[0], outputPaths=paths, previewPaths=previews))
    assert done["type"] == "done", done
    assert [info["path"] for info in done["previews"]] == previews
    for png, info in zip(paths, done["previews"]):
        with Image.open(info["path"]) as preview:
            assert preview.format == "WEBP" and preview.size == (info["width"], info["height"]) == Image.open(png).size
        assert info["mimeType"] == "image/webp" and 0 < info["bytes"] == os.path.getsize(info["path"])

    plain, _ = run(runner, generate("unshown", tiny_models["sd15"], tmp_path))
    assert plain["previews"] == [None], "no previewPaths, no preview"
