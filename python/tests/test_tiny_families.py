"""The tiny flow-matching families load the way the server loads models (DiffusionPipeline.from_pretrained on the
folder) and make 256x256 images that depend on the seed and the prompt only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
import pytest
import torch
from diffusers import DiffusionPipeline

from diffusers_runner import tiny_families

PIPELINE_CLASSES = {
    "flux": "FluxPipeline",
    "fluxkontext": "FluxKontextPipeline",
    "chroma": "ChromaPipeline",
    "sd3": "StableDiffusion3Pipeline",
    "zimage": "ZImagePipeline",
    "qwenimage": "QwenImagePipeline",
    "qwenimageedit": "QwenImageEditPlusPipeline",
    "flux2klein": "Flux2KleinPipeline",
    "krea2": "Krea2Pipeline",
}
# The defaults would only log a warning here: Qwen-Image's true CFG needs a negative prompt, and klein (distilled)
# ignores guidance_scale > 1.
CALL_KWARGS = {
    "qwenimage": {"negative_prompt": " "},
    "flux2klein": {"guidance_scale": 1.0},
    # Kontext scales what it makes to max_area (a megapixel) unless told the area asked for.
    "fluxkontext": {"max_area": 256 * 256},
    # Qwen-Image-Edit only edits: it is given a picture (its processor is the part that needs torchvision).
    "qwenimageedit": {"image": [Image.new("RGB", (64, 48), (200, 30, 30))], "negative_prompt": " "},
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These models are too small to gain from a second thread, and when another process holds the cores, two
    threads waiting on each other make a call 20x slower (2 s instead of 0.1 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def family_dirs(tmp_path_factory) -> dict[str, str]:
    return tiny_families.build_all(tmp_path_factory.mktemp("tiny-families"))


def _generate(pipe: DiffusionPipeline, family: str, prompt: str, seed: int = 1) -> np.ndarray:
    generator = torch.Generator("cpu").manual_seed(seed)
    kwargs = CALL_KWARGS.get(family, {})
    image = pipe(prompt=prompt, height=256, width=256, num_inference_steps=2, generator=generator, **kwargs).images[0]
    assert image.size == (256, 256)
    return np.asarray(image)


def test_every_family_has_a_builder():
    assert list(tiny_families.BUILDERS) == list(PIPELINE_CLASSES)


@pytest.mark.parametrize("family", list(PIPELINE_CLASSES))
def test_family_loads_and_generates(family_dirs, family):
    model_index = json.loads((Path(family_dirs[family]) / "model_index.json").read_text())
    assert model_index["_class_name"] == PIPELINE_CLASSES[family]
    pipe = DiffusionPipeline.from_pretrained(family_dirs[family], local_files_only=True)
    assert type(pipe).__name__ == PIPELINE_CLASSES[family]
    pipe.set_progress_bar_config(disable=True)

    cat = _generate(pipe, family, "a photo of a cat")
    assert np.array_equal(cat, _generate(pipe, family, "a photo of a cat")), "same seed and prompt, other pixels"
    assert not np.array_equal(cat, _generate(pipe, family, "a red dog")), "another prompt, same pixels"


def test_qwen_tokenizer_keeps_the_qwen_image_prefix_length(family_dirs):
    """Qwen-Image and Krea 2 drop the first 34 tokens (the system prompt) of what the encoder returns."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(Path(family_dirs["qwenimage"]) / "tokenizer")
    prefix = tokenizer(tiny_families.QWEN_IMAGE_SYSTEM_PREFIX).input_ids
    assert len(prefix) == tiny_families.QWEN_IMAGE_SYSTEM_PREFIX_TOKENS
    suffix = tokenizer("<|im_end|>\n<|im_start|>assistant\n").input_ids
    assert len(suffix) == 5  # Krea 2's prompt_template_encode_num_suffix_tokens
    messages = [{"role": "user", "content": "a cat"}]
    header = "<|im_start|>user\na cat<|im_end|>\n<|im_start|>assistant\n"
    # Z-Image asks for thinking (no block), FLUX.2 klein not (an empty block), as Qwen3's own template does
    def chat(thinking: bool) -> str:
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking)

    assert chat(True) == header
    assert chat(False) == header + "<think>\n\n</think>\n\n"


def test_main_builds_the_named_families(tmp_path, capsys):
    assert tiny_families.main([str(tmp_path), "sd3"]) == 0
    assert json.loads(capsys.readouterr().out) == {"sd3": str(tmp_path / "sd3")}
    assert (tmp_path / "sd3" / "model_index.json").is_file()
    assert tiny_families.main([str(tmp_path), "nope"]) == 2


@pytest.mark.parametrize("kind", ["first_block", "taylorseer"])
def test_an_opted_in_step_cache_hooks_into_a_family_that_takes_one_and_the_job_records_it(family_dirs, kind):
    import threading

    from diffusers_runner.device import DeviceChoice, RuntimeOptions
    from diffusers_runner.generate import run_generate
    from diffusers_runner.pipelines import ModelCache

    options = RuntimeOptions(attention_slicing=False, channels_last=False, compile=False, step_cache=kind)
    cache = ModelCache(DeviceChoice("cpu", torch.float32, options))
    out = Path(family_dirs["flux"]).parent / f"cached-{kind}.png"
    request = {
        "type": "generate", "jobId": f"cache-{kind}", "model": {"name": "tiny_flux", "path": family_dirs["flux"]}, "prompt": "a cached fox",
        "negativePrompt": None, "width": 256, "height": 256, "steps": 6, "cfgScale": 3.5, "seed": 1, "scheduler": None, "refiner": None,
        "outputPath": str(out),
    }
    done = run_generate(request, cache, threading.Event(), lambda _event: None)
    assert done["options"]["firstBlockCache"] is (kind == "first_block")
    assert done["options"]["taylorSeerCache"] is (kind == "taylorseer")
    assert done["stepsRun"] == 6 and out.is_file()
    # A family whose transformer diffusers gives no cache hooks is left as it is.
    zimage, _ = cache.get(family_dirs["zimage"], None)
    assert zimage.step_cache is None
