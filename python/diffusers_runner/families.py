"""The model families as families.json declares them: the one table the runner and the server both read.

A family says which diffusers pipeline classes run it, how its guidance works, what it takes (negative prompt,
LoRA, refiner), its prompt encoder and token limit, its size rule, its schedulers and its dtype per device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

TABLE = Path(__file__).with_name("families.json")

# "cfg": cfg_scale is classifier-free guidance (a negative prompt needs it above 1); "distilled": cfg_scale is the
# guidance the model was distilled with (FLUX.1 dev), a negative prompt runs true CFG on top; "true_cfg": cfg_scale
# is the pipeline's true_cfg_scale (Qwen-Image).
Guidance = Literal["cfg", "distilled", "true_cfg"]

DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


@dataclass(frozen=True)
class Family:
    name: str
    label: str
    # "text", "image" (image-to-image) and "inpaint": diffusers class names; a role the family lacks is absent
    pipelines: dict[str, str]
    denoiser: Literal["unet", "transformer"]
    guidance: Guidance
    # True, False, or "true_cfg": taken by running true CFG at true_cfg_scale
    negative_prompt: bool | str
    true_cfg_scale: float | None
    # guidance acts above this cfg_scale: 1 for classic CFG (1 means none), 0 for Z-Image and Krea 2
    guidance_above: float
    lora: bool
    refiner: bool
    # diffusers' step caches (FirstBlockCache, TaylorSeer) hook into this family's transformer
    step_cache: bool
    # "clip": A1111 chunking and emphasis; "t5" / "llm": the prompt whole, up to max_tokens
    encoder: str
    max_tokens: int | None
    # the pipeline attribute holding the long-context encoder's tokenizer, which counts the prompt's tokens
    tokenizer: str
    size_multiple: int
    defaults: dict[str, Any]
    schedulers: tuple[str, ...]
    dtypes: dict[str, str]
    # instruction edits (pipelines["edit"]): how many images one edit takes, the edited one first; 0: it edits none
    edit_images: int = 0
    # a family that only edits (Qwen-Image-Edit): text-to-image is refused
    edit_only: bool = False
    # whether its ControlNet can steer a share of the schedule (start, end); Z-Image's steers all of it
    control_schedule: bool = True

    @property
    def uses_clip_prompts(self) -> bool:
        return self.encoder == "clip"

    def dtype(self, device: str) -> torch.dtype:
        return DTYPES[self.dtypes[device]]


def _family(name: str, entry: dict[str, Any]) -> Family:
    return Family(
        name=name,
        label=entry["label"],
        pipelines=dict(entry["pipelines"]),
        denoiser=entry["denoiser"],
        guidance=entry["guidance"],
        negative_prompt=entry["negativePrompt"],
        true_cfg_scale=entry.get("trueCfgScale"),
        guidance_above=entry.get("guidanceAbove", 1),
        lora=entry["lora"],
        step_cache=entry.get("stepCache", False),
        refiner=entry["refiner"],
        encoder=entry["prompt"]["encoder"],
        max_tokens=entry["prompt"]["maxTokens"],
        tokenizer=entry["prompt"].get("tokenizer", "tokenizer"),
        size_multiple=entry["sizeMultiple"],
        defaults=dict(entry["defaults"]),
        schedulers=tuple(entry["schedulers"]),
        dtypes=dict(entry["dtype"]),
        edit_images=entry.get("editImages", 0),
        edit_only=entry.get("editOnly", False),
        control_schedule=entry.get("controlSchedule", True),
    )


def load_families(path: Path = TABLE) -> dict[str, Family]:
    return {name: _family(name, entry) for name, entry in json.loads(path.read_text())["families"].items()}


FAMILIES: dict[str, Family] = load_families()

# SDXL's refiner is a pipeline of its own but never a model on its own: only another model's helper.
REFINER_PIPELINE = "StableDiffusionXLImg2ImgPipeline"

# model_index.json's _class_name -> family name.
PIPELINE_FAMILIES: dict[str, str] = {
    **{family.pipelines["text"]: name for name, family in FAMILIES.items()},
    REFINER_PIPELINE: "sdxl_refiner",
}
