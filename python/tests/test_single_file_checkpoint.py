"""The single-file (original LDM layout) writer round-trips through diffusers' own from_single_file, offline.

from_single_file gets a config-only copy of the model folder (the *.json/*.txt a Hub snapshot of configs holds),
not the folder itself: with the folder, diffusers silently loads a text encoder from the folder's weights when it
finds none in the file, and the comparison would prove nothing.
"""

import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline
from PIL import Image
from safetensors import safe_open

from tests.single_file_checkpoint import write_single_file

PIPELINES = {
    "sd15": (StableDiffusionPipeline, {"safety_checker": None, "requires_safety_checker": False}),
    "sdxl": (StableDiffusionXLPipeline, {}),
    "sdxl_refiner": (StableDiffusionXLImg2ImgPipeline, {}),
}
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@pytest.fixture(scope="module")
def single_files(tiny_models, tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """name -> (the .safetensors file, a config-only copy of the model folder)."""
    out = tmp_path_factory.mktemp("single-file")
    files = {}
    for name in PIPELINES:
        model_dir = Path(tiny_models[name])
        config_dir = out / f"{name}-config"
        for source in model_dir.rglob("*"):
            if source.is_file() and source.suffix in (".json", ".txt"):
                target = config_dir / source.relative_to(model_dir)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, target)
        files[name] = (write_single_file(model_dir, out / f"{name}.safetensors"), config_dir)
    return files


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)


def _generate(pipe, name: str) -> np.ndarray:
    kwargs = dict(prompt="a cat", num_inference_steps=2, height=256, width=256, output_type="np")
    if name == "sdxl_refiner":  # image-to-image: 4 steps at strength 0.5 run 2
        image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8))
        kwargs.update(image=image, num_inference_steps=4, strength=0.5)
        del kwargs["height"], kwargs["width"]
    return pipe(**kwargs, generator=torch.Generator("cpu").manual_seed(0)).images


@pytest.mark.parametrize("name", list(PIPELINES))
def test_single_file_loads_like_the_folder(name, tiny_models, single_files):
    pipeline_class, kwargs = PIPELINES[name]
    model_dir = Path(tiny_models[name])
    file, config_dir = single_files[name]

    folder = pipeline_class.from_pretrained(model_dir, **kwargs)
    single = pipeline_class.from_single_file(str(file), config=str(config_dir), local_files_only=True, **kwargs)

    compared = []
    for component in COMPONENTS:
        expected, actual = getattr(folder, component, None), getattr(single, component, None)
        assert (expected is None) == (actual is None), component
        if expected is None:
            continue
        expected, actual = expected.state_dict(), actual.state_dict()
        assert expected.keys() == actual.keys(), component
        unequal = [key for key in expected if not torch.equal(expected[key], actual[key])]
        assert not unequal, f"{component}: {unequal[:5]}"
        compared.append(component)
    assert len(compared) == {"sd15": 3, "sdxl": 4, "sdxl_refiner": 3}[name]

    expected_image, actual_image = _generate(folder, name), _generate(single, name)
    assert np.isfinite(expected_image).all()
    np.testing.assert_array_equal(actual_image, expected_image)


def test_file_uses_the_original_ldm_layout(single_files):
    def keys(name):
        with safe_open(single_files[name][0], "pt") as f:
            return set(f.keys())

    sd15, sdxl, refiner = keys("sd15"), keys("sdxl"), keys("sdxl_refiner")
    for expected in (
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.middle_block.1.proj_in.weight",
        "model.diffusion_model.out.2.weight",
        "first_stage_model.encoder.down.0.block.0.norm1.weight",
        "first_stage_model.decoder.mid.attn_1.q.weight",
        "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight",
    ):
        assert expected in sd15, expected
    assert "model.diffusion_model.label_emb.0.0.weight" in sdxl
    assert "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight" in sdxl
    assert "conditioner.embedders.1.model.transformer.resblocks.1.attn.in_proj_weight" in sdxl
    assert "conditioner.embedders.0.model.text_projection" in refiner
    assert not any(k.startswith("conditioner.embedders.1.") for k in refiner)
    with safe_open(single_files["sd15"][0], "pt") as f:  # the VAE attention is stored as 1x1 convs, as in LDM
        assert f.get_tensor("first_stage_model.decoder.mid.attn_1.q.weight").ndim == 4
