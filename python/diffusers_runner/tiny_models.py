"""Builds tiny random-weight SD 1.5, SDXL and SDXL-refiner pipelines for tests and the demo.

`python -m diffusers_runner.tiny_models OUT_DIR` writes OUT_DIR/{sd15,sdxl,sdxl_refiner}, each a diffusers folder
saved with save_pretrained, so they load through the same from_pretrained path as real models, and
OUT_DIR/loras/{tiny_sd15_detail,tiny_sdxl_detail}.safetensors, random PEFT LoRAs saved as diffusers saves them.
Their images are noise. The VAE keeps four blocks, so latents are 1/8 of the image side as in real Stable Diffusion.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

from .clip_tokenizer import bytes_to_unicode

SEED = 0
TEXT_HIDDEN = 32
# SDXL's second encoder is wider than its first, as in the real model (1280 vs 768). Equal widths would also make
# diffusers' single-file loader take the first encoder's weights for the second, so the widths must differ.
TEXT_HIDDEN_2 = 48


def write_tokenizer(folder: Path) -> CLIPTokenizer:
    """A character-level CLIP tokenizer: every byte symbol, with and without the end-of-word mark, and no merges."""
    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_list)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    # transformers 5 takes the vocab and merges themselves; save_pretrained then writes tokenizer.json beside them.
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77, pad_token="<|endoftext|>")


def _text_config(vocab_size: int, hidden: int = TEXT_HIDDEN) -> CLIPTextConfig:
    return CLIPTextConfig(
        bos_token_id=vocab_size - 2,
        eos_token_id=vocab_size - 1,
        pad_token_id=vocab_size - 1,
        hidden_size=hidden,
        intermediate_size=37,
        layer_norm_eps=1e-05,
        num_attention_heads=4,
        num_hidden_layers=2,
        vocab_size=vocab_size,
        hidden_act="gelu",
        projection_dim=hidden,
        max_position_embeddings=77,
    )


def _vae(widths: tuple[int, ...] = (16, 16, 32, 32), latent_channels: int = 4, sample_size: int = 128, **extra) -> AutoencoderKL:
    """Four blocks, so latents are 1/8 of the image side as in the real VAEs; `extra` for the newer families' options."""
    return AutoencoderKL(
        block_out_channels=widths,
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=latent_channels,
        layers_per_block=1,
        norm_num_groups=8,
        sample_size=sample_size,
        **extra,
    )


def _unet(**overrides) -> UNet2DConditionModel:
    config = dict(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=TEXT_HIDDEN,
        attention_head_dim=(2, 4),
        norm_num_groups=8,
    )
    config.update(overrides)
    return UNet2DConditionModel(**config)


def _sdxl_scheduler() -> EulerDiscreteScheduler:
    return EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", timestep_spacing="leading", steps_offset=1
    )


def build_sd15(out: Path, tokenizer: CLIPTokenizer, text_width: int = TEXT_HIDDEN, name: str = "sd15") -> Path:
    torch.manual_seed(SEED)
    pipe = StableDiffusionPipeline(
        unet=_unet(cross_attention_dim=text_width),
        scheduler=PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True, steps_offset=1),
        vae=_vae(),
        text_encoder=CLIPTextModel(_text_config(len(tokenizer), text_width)),
        tokenizer=tokenizer,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out / name)
    return out / name


def build_sd15_clip_width(out: Path, tokenizer: CLIPTokenizer) -> Path:
    """SD 1.5 with CLIP's real width (768): apps that tell SD 1.5 by its cross-attention size (InvokeAI) accept it."""
    return build_sd15(out, tokenizer, text_width=768, name="sd15_768")


def _sdxl_unet(time_ids: int, cross_attention_dim: int) -> UNet2DConditionModel:
    return _unet(
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        # pooled text embedding + one 8-wide embedding per time id
        projection_class_embeddings_input_dim=TEXT_HIDDEN_2 + time_ids * 8,
        cross_attention_dim=cross_attention_dim,
    )


def build_sdxl(out: Path, tokenizer: CLIPTokenizer) -> tuple[Path, Path]:
    torch.manual_seed(SEED)
    text_encoder_2 = CLIPTextModelWithProjection(_text_config(len(tokenizer), TEXT_HIDDEN_2))
    vae = _vae()
    base = StableDiffusionXLPipeline(
        # SDXL conditions on original size, crop and target size: six time ids
        unet=_sdxl_unet(time_ids=6, cross_attention_dim=TEXT_HIDDEN + TEXT_HIDDEN_2),
        scheduler=_sdxl_scheduler(),
        vae=vae,
        text_encoder=CLIPTextModel(_text_config(len(tokenizer))),
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
    )
    base.save_pretrained(out / "sdxl")
    refiner = StableDiffusionXLImg2ImgPipeline(
        # the refiner swaps target size for an aesthetic score (five time ids) and uses only the second encoder
        unet=_sdxl_unet(time_ids=5, cross_attention_dim=TEXT_HIDDEN_2),
        scheduler=_sdxl_scheduler(),
        vae=vae,
        text_encoder=None,
        text_encoder_2=text_encoder_2,
        tokenizer=None,
        tokenizer_2=tokenizer,
        requires_aesthetics_score=True,
        force_zeros_for_empty_prompt=False,
    )
    refiner.save_pretrained(out / "sdxl_refiner")
    return out / "sdxl", out / "sdxl_refiner"


def build_lora(model_dir: Path, pipeline_class: type, target: Path, seed: int = 1) -> Path:
    """A rank-4 LoRA on the UNet's attention projections. PEFT starts lora_B at zero (no effect); random B makes
    it change the image, which is what a test needs to see."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    pipeline_class.save_lora_weights(target.parent, unet_lora_layers=layers, weight_name=target.name)
    return target


def build_all(out: Path) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = write_tokenizer(out / "_tokenizer")
    sd15 = build_sd15(out, tokenizer)
    sdxl, refiner = build_sdxl(out, tokenizer)
    loras = out / "loras"
    build_lora(sd15, StableDiffusionPipeline, loras / "tiny_sd15_detail.safetensors")
    build_lora(sdxl, StableDiffusionXLPipeline, loras / "tiny_sdxl_detail.safetensors", seed=2)
    return {"sd15": str(sd15), "sdxl": str(sdxl), "sdxl_refiner": str(refiner), "loras": str(loras)}


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[1] == "--sd15-768":
        out = Path(argv[0])
        print(json.dumps({"sd15_768": str(build_sd15_clip_width(out, write_tokenizer(out / "_tokenizer")))}))
        return 0
    if len(argv) != 1:
        print("usage: python -m diffusers_runner.tiny_models OUT_DIR [--sd15-768]", file=sys.stderr)
        return 2
    paths = build_all(Path(argv[0]))
    print(json.dumps(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
