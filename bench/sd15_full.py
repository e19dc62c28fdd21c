"""Full-size random-weight SD 1.5 for bench/full-size.mjs: builds the diffusers folder once, then times bare pipe().

  python bench/sd15_full.py build DIR        # writes DIR (a save_pretrained folder, ~4.3 GB fp32) unless it is there
  python bench/sd15_full.py serve DIR        # loads DIR once, prints {"ready": ...}, then per stdin line
                                             # {"seed", "size", "steps", "guidance"} runs pipe() and prints {"seconds"}

The configs are runwayml/stable-diffusion-v1-5's own (unet/config.json, vae/config.json, text_encoder/config.json,
scheduler/scheduler_config.json), written out below; the class defaults fill in the keys they leave out. Weights are
the classes' own random initialisation (seed 0): timing does not depend on their values. The tokenizer is the
project's character-level CLIP tokenizer (diffusers_runner.tiny_models.write_tokenizer): prompts pad to 77 tokens,
so its vocabulary changes none of the work. Needs PYTHONPATH=python for that import.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

# runwayml/stable-diffusion-v1-5, unet/config.json
UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[320, 640, 1280, 1280], layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8,
)
# runwayml/stable-diffusion-v1-5, vae/config.json
VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, act_fn="silu",
    block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, sample_size=512,
)
# runwayml/stable-diffusion-v1-5, text_encoder/config.json (OpenAI CLIP ViT-L/14's text tower)
TEXT_ENCODER = dict(
    vocab_size=49408, hidden_size=768, intermediate_size=3072, projection_dim=768, num_hidden_layers=12,
    num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", layer_norm_eps=1e-5,
    attention_dropout=0.0, dropout=0.0, initializer_factor=1.0, initializer_range=0.02,
    bos_token_id=0, eos_token_id=2, pad_token_id=1,
)
# runwayml/stable-diffusion-v1-5, scheduler/scheduler_config.json
SCHEDULER = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", trained_betas=None,
    skip_prk_steps=True, set_alpha_to_one=False, steps_offset=1, clip_sample=False,
)
EXPECTED_PARAMS = {"unet": 859_520_964, "vae": 83_653_863, "text_encoder": 123_060_480}
PROMPT = "a red cube"


def log(message: str) -> None:
    print(f"[sd15_full {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def param_counts(pipe) -> dict[str, int]:
    return {name: sum(p.numel() for p in getattr(pipe, name).parameters()) for name in EXPECTED_PARAMS}


def build(folder: Path) -> None:
    if (folder / "model_index.json").is_file():
        log(f"{folder} is there; reusing it")
        return
    from diffusers_runner.tiny_models import write_tokenizer

    started = time.perf_counter()
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    torch.manual_seed(0)
    pipe = StableDiffusionPipeline(
        unet=UNet2DConditionModel(**UNET),
        vae=AutoencoderKL(**VAE),
        text_encoder=CLIPTextModel(CLIPTextConfig(**TEXT_ENCODER)),
        tokenizer=write_tokenizer(partial / "_tokenizer_source"),
        scheduler=PNDMScheduler.from_config(SCHEDULER),  # from_config skips clip_sample, as loading the file does
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    counts = param_counts(pipe)
    for name, expected in EXPECTED_PARAMS.items():
        log(f"{name:13s} {counts[name]:>13,} parameters (SD 1.5: {expected:,}){'' if counts[name] == expected else '  MISMATCH'}")
    if counts != EXPECTED_PARAMS:
        raise SystemExit("parameter counts differ from SD 1.5's: the configs above are wrong")
    pipe.save_pretrained(partial)
    shutil.rmtree(partial / "_tokenizer_source")
    partial.rename(folder)  # only a complete folder is ever reused
    log(f"built and saved {sum(counts.values()):,} parameters to {folder} in {time.perf_counter() - started:.0f} s")


def serve(folder: Path) -> None:
    started = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(folder, dtype=torch.float32, safety_checker=None, requires_safety_checker=False, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    print(json.dumps({"ready": True, "loadSeconds": round(time.perf_counter() - started, 3), "params": param_counts(pipe), "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        ask = json.loads(line)
        started = time.perf_counter()
        image = pipe(PROMPT, width=ask["size"], height=ask["size"], num_inference_steps=ask["steps"], guidance_scale=ask["guidance"],
                     generator=torch.Generator("cpu").manual_seed(ask["seed"])).images[0]
        seconds = time.perf_counter() - started
        print(json.dumps({"seconds": round(seconds, 4), "size": list(image.size)}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("build", "serve"):
        raise SystemExit("usage: python bench/sd15_full.py build|serve DIR")
    (build if sys.argv[1] == "build" else serve)(Path(sys.argv[2]).resolve())
