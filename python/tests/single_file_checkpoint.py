"""Writes a diffusers folder (SD 1.5, SDXL base, SDXL refiner) as ONE .safetensors file in the original
Stability AI / CompVis ("LDM") layout, the way single-file checkpoints from Civitai are laid out.

Test helper only. The key mapping is the inverse of diffusers' own single-file converter
(diffusers/loaders/single_file_utils.py: convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint,
convert_ldm_clip_checkpoint, convert_open_clip_checkpoint) and is driven by each component's config, so it works
for the tiny test models as well as the real sizes. Every key of the folder must be mapped, or it raises.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

# diffusers ResnetBlock2D name -> LDM ResBlock name (UNet)
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
# top-level UNet modules: diffusers prefix -> LDM prefix (add_embedding is SDXL's label_emb)
_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
# VAE mid-block attention: diffusers Attention -> LDM AttnBlock
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _read_component(folder: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """config.json and the (possibly sharded) non-variant safetensors weights of one component folder."""
    config = json.loads((folder / "config.json").read_text())
    state: dict[str, torch.Tensor] = {}
    files = [f for f in sorted(folder.glob("*.safetensors")) if f.name.count(".") == 1 or "-of-" in f.name]
    if not files:
        raise FileNotFoundError(f"no .safetensors weights in {folder}")
    for file in files:
        state.update(load_file(file))
    return config, state


def _split(rest: str) -> tuple[str, str]:
    """'norm1.weight' -> ('norm1', 'weight'); 'to_out.0.bias' -> ('to_out.0', 'bias')."""
    module, _, param = rest.rpartition(".")
    return module, param


def _unet_to_ldm(config: dict, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    per_block = config["layers_per_block"]
    if not isinstance(per_block, int):
        raise ValueError("diffusers' converter only handles an int layers_per_block")
    slots = per_block + 1  # LDM slots per level: the resnets plus a downsampler (input) / one more resnet (output)
    up_has_attn = ["CrossAttn" in kind for kind in config["up_block_types"]]

    def resnet(rest: str) -> str:
        module, param = _split(rest)
        return f"{_UNET_RESNET[module]}.{param}"

    def key(k: str) -> str:
        for old, new in _UNET_TOP.items():
            if k.startswith(old):
                return new + k[len(old):]
        # input_blocks.0 is conv_in; level b, layer j sits at 1 + b*slots + j, its downsampler at the last slot
        if m := re.fullmatch(r"down_blocks\.(\d+)\.(resnets|attentions|downsamplers)\.(\d+)\.(.+)", k):
            level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            if kind == "downsamplers":  # Downsample's conv is called `op` in LDM
                return f"input_blocks.{1 + level * slots + per_block}.0.op.{rest.removeprefix('conv.')}"
            i = 1 + level * slots + j
            return f"input_blocks.{i}.0.{resnet(rest)}" if kind == "resnets" else f"input_blocks.{i}.1.{rest}"
        # middle_block: 0 resnet, 1 spatial transformer, 2 resnet
        if m := re.fullmatch(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", k):
            kind, j, rest = m[1], int(m[2]), m[3]
            return f"middle_block.{2 * j}.{resnet(rest)}" if kind == "resnets" else f"middle_block.1.{rest}"
        # output_blocks: level b, layer j at b*slots + j; [0] resnet, [1] attention, then the upsampler ([1] or [2])
        if m := re.fullmatch(r"up_blocks\.(\d+)\.(resnets|attentions|upsamplers)\.(\d+)\.(.+)", k):
            level, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
            if kind == "upsamplers":
                return f"output_blocks.{level * slots + per_block}.{2 if up_has_attn[level] else 1}.{rest}"
            i = level * slots + j
            return f"output_blocks.{i}.0.{resnet(rest)}" if kind == "resnets" else f"output_blocks.{i}.1.{rest}"
        raise KeyError(f"unmapped UNet key {k}")

    # the spatial transformers (norm, proj_in, transformer_blocks.N..., proj_out) keep diffusers' names and shapes
    return {key(k): v for k, v in state.items()}


def _vae_to_ldm(config: dict, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    levels = len(config["up_block_types"])
    out = {}
    for k, v in state.items():
        new = k.replace("conv_norm_out", "norm_out")
        if m := re.fullmatch(r"encoder\.down_blocks\.(\d+)\.(resnets\.(\d+)|downsamplers\.0)\.(.+)", new):
            level, rest = m[1], m[4]
            new = f"encoder.down.{level}.block.{m[3]}.{rest}" if m[3] else f"encoder.down.{level}.downsample.{rest}"
        elif m := re.fullmatch(r"decoder\.up_blocks\.(\d+)\.(resnets\.(\d+)|upsamplers\.0)\.(.+)", new):
            level, rest = levels - 1 - int(m[1]), m[4]  # LDM numbers decoder levels from the lowest resolution up
            new = f"decoder.up.{level}.block.{m[3]}.{rest}" if m[3] else f"decoder.up.{level}.upsample.{rest}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", new):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.fullmatch(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", new):
            module, param = _split(m[2])
            new = f"{m[1]}.mid.attn_1.{_VAE_ATTN[module]}.{param}"
            if v.ndim == 2:  # LDM's AttnBlock uses 1x1 convs for q/k/v/proj_out; diffusers squeezes them back
                v = v[:, :, None, None]
        elif not re.fullmatch(r"(encoder|decoder)\.(conv_in|conv_out|norm_out)\.\w+|(post_)?quant_conv\.\w+", new):
            raise KeyError(f"unmapped VAE key {k}")
        out[new.replace("conv_shortcut", "nin_shortcut")] = v
    return out


def _hf_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF CLIPTextModel names as in real checkpoints: transformers >= 5.6 saves CLIPTextModel without `text_model.`."""
    return {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in state.items()}


def _open_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIPTextModelWithProjection -> OpenCLIP text tower names (model.* in the SGM checkpoints)."""
    state = {k.removeprefix("text_model."): v for k, v in state.items()}
    out = {
        "positional_embedding": state.pop("embeddings.position_embedding.weight"),
        "token_embedding.weight": state.pop("embeddings.token_embedding.weight"),
        "ln_final.weight": state.pop("final_layer_norm.weight"),
        "ln_final.bias": state.pop("final_layer_norm.bias"),
        # OpenCLIP computes x @ text_projection: (hidden, projection_dim), the transpose of HF's Linear weight.
        # diffusers reads the hidden size from its shape[0] to split in_proj back into q/k/v.
        "text_projection": state.pop("text_projection.weight").T.contiguous(),
    }
    layers = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.layers.")})
    for n in layers:
        src, dst = f"encoder.layers.{n}.", f"transformer.resblocks.{n}."
        for param in ("weight", "bias"):  # nn.MultiheadAttention keeps q, k, v stacked in one in_proj
            out[f"{dst}attn.in_proj_{param}"] = torch.cat(
                [state.pop(f"{src}self_attn.{p}_proj.{param}") for p in "qkv"]
            )
            for old, new in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                             ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"), ("mlp.fc2", "mlp.c_proj")):
                out[f"{dst}{new}.{param}"] = state.pop(f"{src}{old}.{param}")
    if state:
        raise KeyError(f"unmapped OpenCLIP keys {sorted(state)}")
    return out


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + k: v.contiguous() for k, v in state.items()}


def write_single_file(model_dir: str | Path, out_file: str | Path) -> Path:
    """Writes model_dir (a diffusers StableDiffusion / StableDiffusionXL / StableDiffusionXLImg2Img folder) as one
    LDM-layout .safetensors file at out_file and returns its path."""
    model_dir, out_file = Path(model_dir), Path(out_file)
    family = json.loads((model_dir / "model_index.json").read_text())["_class_name"]
    checkpoint = _prefixed("model.diffusion_model.", _unet_to_ldm(*_read_component(model_dir / "unet")))
    checkpoint |= _prefixed("first_stage_model.", _vae_to_ldm(*_read_component(model_dir / "vae")))
    if family == "StableDiffusionPipeline":
        checkpoint |= _prefixed("cond_stage_model.transformer.", _hf_clip(_read_component(model_dir / "text_encoder")[1]))
    elif family == "StableDiffusionXLPipeline":  # SGM conditioner: CLIP-L (HF names) then OpenCLIP bigG
        checkpoint |= _prefixed("conditioner.embedders.0.transformer.", _hf_clip(_read_component(model_dir / "text_encoder")[1]))
        checkpoint |= _prefixed("conditioner.embedders.1.model.", _open_clip(_read_component(model_dir / "text_encoder_2")[1]))
    elif family == "StableDiffusionXLImg2ImgPipeline":  # the refiner's only embedder is bigG
        checkpoint |= _prefixed("conditioner.embedders.0.model.", _open_clip(_read_component(model_dir / "text_encoder_2")[1]))
    else:
        raise ValueError(f"unsupported pipeline {family}")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    save_file(checkpoint, out_file, metadata={"format": "pt"})
    return out_file
