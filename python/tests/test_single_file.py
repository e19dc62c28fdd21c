"""Single-file checkpoints: the shipped configs are the real models', the config folder assembles offline, and the
family is read from the tensor names."""

import json

import pytest
import torch
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from diffusers_runner.pipelines import ModelLoadError, detect_family
from diffusers_runner.single_file import CONFIGS, config_folder

# Parameter counts of the published models (runwayml/stable-diffusion-v1-5, stabilityai/stable-diffusion-xl-base-1.0
# and -refiner-1.0): a config that builds these counts is the real architecture.
PUBLISHED = {
    "sd15": {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480},
    "sdxl": {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480, "text_encoder_2": 694_659_840},
    "sdxl_refiner": {"unet": 2_259_526_660, "vae": 83_653_863, "text_encoder_2": 694_659_840},
}
TEXT_CLASSES = {"CLIPTextModel": CLIPTextModel, "CLIPTextModelWithProjection": CLIPTextModelWithProjection}


@pytest.mark.parametrize("family", PUBLISHED)
def test_the_shipped_configs_build_the_published_architectures(family):
    folder = CONFIGS / family
    counts = {}
    with init_empty_weights():
        counts["unet"] = sum(p.numel() for p in UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder / "unet")).parameters())
        counts["vae"] = sum(p.numel() for p in AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "vae")).parameters())
        for name in ("text_encoder", "text_encoder_2"):
            if (folder / name).is_dir():
                config = CLIPTextConfig.from_pretrained(folder / name)
                counts[name] = sum(p.numel() for p in TEXT_CLASSES[config.architectures[0]](config).parameters())
    assert counts == PUBLISHED[family]


def test_the_config_folder_is_assembled_once_with_each_familys_tokenizers(tmp_path):
    sdxl = config_folder("sdxl", tmp_path)
    assert json.loads((sdxl / "model_index.json").read_text())["_class_name"] == "StableDiffusionXLPipeline"
    first, second = CLIPTokenizer.from_pretrained(sdxl / "tokenizer"), CLIPTokenizer.from_pretrained(sdxl / "tokenizer_2")
    assert first("a photo of a cat").input_ids == second("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert (first.pad_token_id, second.pad_token_id) == (49407, 0)
    stamp = (sdxl / "model_index.json").stat().st_mtime_ns
    assert config_folder("sdxl", tmp_path) == sdxl and (sdxl / "model_index.json").stat().st_mtime_ns == stamp
    refiner = config_folder("sdxl_refiner", tmp_path)
    assert not (refiner / "tokenizer").exists() and (refiner / "tokenizer_2" / "vocab.json").is_file()


def _checkpoint(path, names):
    save_file({name: torch.zeros(1) for name in names}, str(path))
    return path


def test_the_family_comes_from_the_text_encoders_a_checkpoint_carries(tmp_path):
    unet = "model.diffusion_model.input_blocks.0.0.weight"
    assert detect_family(_checkpoint(tmp_path / "a.safetensors", [unet, "cond_stage_model.transformer.text_model.final_layer_norm.weight"])) == "sd15"
    assert detect_family(_checkpoint(tmp_path / "b.safetensors", [unet, "conditioner.embedders.0.transformer.x", "conditioner.embedders.1.model.positional_embedding"])) == "sdxl"
    assert detect_family(_checkpoint(tmp_path / "c.safetensors", [unet, "conditioner.embedders.0.model.text_projection"])) == "sdxl_refiner"
    with pytest.raises(ModelLoadError, match="Stable Diffusion 2.x checkpoint"):
        detect_family(_checkpoint(tmp_path / "d.safetensors", [unet, "cond_stage_model.model.token_embedding.weight"]))
    with pytest.raises(ModelLoadError, match="diffusers-layout file"):
        detect_family(_checkpoint(tmp_path / "e.safetensors", ["down_blocks.0.resnets.0.conv1.weight"]))
    (tmp_path / "f.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="could not be read as a checkpoint"):
        detect_family(tmp_path / "f.safetensors")
    with pytest.raises(ModelLoadError, match="does not exist"):
        detect_family(tmp_path / "missing.ckpt")


def test_a_pickle_checkpoint_is_read_without_running_code(tmp_path):
    torch.save({"state_dict": {"cond_stage_model.transformer.text_model.x": torch.zeros(1)}}, tmp_path / "old.ckpt")
    assert detect_family(tmp_path / "old.ckpt") == "sd15"

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code ran')",))

    torch.save({"state_dict": {"x": Boom()}}, tmp_path / "evil.ckpt")
    with pytest.raises(ModelLoadError, match="could not be read as a checkpoint"):
        detect_family(tmp_path / "evil.ckpt")
