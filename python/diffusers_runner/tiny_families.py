"""Builds tiny random-weight pipelines of the flow-matching transformer families for tests: FLUX.1, Chroma, SD3,
Z-Image, Qwen-Image, FLUX.2 klein and Krea 2.

`python -m diffusers_runner.tiny_families OUT_DIR [family ...]` writes OUT_DIR/<family>/ for every family (or the
named ones), each a diffusers folder saved with save_pretrained, so it loads through the same
DiffusionPipeline.from_pretrained path as the real model, and prints {family: path} as one JSON line.

Each folder has the real one's component classes, latent channels, 8x VAE and scheduler config; only the widths and
depths are tiny, so a two-step 256x256 image takes well under a second on a CPU. The images are noise; the seed
decides them and the prompt shifts them (in the Qwen-encoded families only by a fraction of a gray level, since random
modulation gates barely let the text through). The tokenizers are written here, never downloaded: CLIP and Qwen are
byte-level BPE, T5 a SentencePiece-style Unigram over single characters and a few words.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    AutoencoderKLQwenImage,
    ChromaPipeline,
    ChromaTransformer2DModel,
    FlowMatchEulerDiscreteScheduler,
    Flux2KleinPipeline,
    Flux2Transformer2DModel,
    FluxPipeline,
    FluxKontextPipeline,
    FluxTransformer2DModel,
    Krea2Pipeline,
    Krea2Transformer2DModel,
    QwenImageEditPlusPipeline,
    QwenImagePipeline,
    QwenImageTransformer2DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    ZImagePipeline,
    ZImageTransformer2DModel,
)
from transformers import (
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2Tokenizer,
    Qwen3Config,
    Qwen3ForCausalLM,
    Qwen3Model,
    Qwen3VLConfig,
    Qwen3VLModel,
    T5Config,
    T5EncoderModel,
    T5Tokenizer,
)

from .clip_tokenizer import bytes_to_unicode
from .tiny_models import _text_config as _clip_config
from .tiny_models import _vae

SEED = 0
# SD3 pads its CLIP-L + CLIP-G features up to T5's width and concatenates them along the sequence, so T5 must be
# the widest; the CLIPs differ in width as the real ones do (768 and 1280 under 4096).
T5_HIDDEN = 64
CLIP_L_HIDDEN = 16
CLIP_G_HIDDEN = 32
FLUX_CLIP_HIDDEN = 32
QWEN_HIDDEN = 32
# FLUX.2 klein stacks Qwen3's hidden states 9, 18 and 27, so its encoder needs at least 27 layers; with 28 the last
# tap is an inner layer (not the final-normed output) as in Qwen3-4B's 36.
KLEIN_TEXT_LAYERS = 28
KLEIN_TEXT_TAPS = (9, 18, 27)
# Krea 2 taps twelve of Qwen3-VL-4B's 36 layers by default; the tiny encoder has three, the pipeline config says
# which two to tap.
KREA2_TEXT_TAPS = (1, 2)

# Qwen-Image and Krea 2 format this system prompt themselves and drop its first 34 tokens (as Qwen's real
# tokenizer splits it), so the tiny tokenizer has one token per word of it.
QWEN_IMAGE_SYSTEM_PREFIX = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, quantity, text, "
    "spatial relationships of the objects and background:<|im_end|>\n<|im_start|>user\n"
)
QWEN_IMAGE_SYSTEM_PREFIX_TOKENS = 34
QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
# Qwen3's chat template, less tools and reasoning history: Z-Image asks for enable_thinking=True (no think block),
# FLUX.2 klein for enable_thinking=False (an empty think block after the assistant header).
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if enable_thinking is defined and enable_thinking is false -%}"
    "{{- '<think>\\n\\n</think>\\n\\n' -}}"
    "{%- endif -%}"
    "{%- endif -%}"
)
# "Ġ" is the byte-level BPE's mark for a leading space
QWEN_WORDS = ["system", "user", "assistant", "Describe"] + [
    "Ġ" + word
    for word in (
        "the image by detailing color shape size texture quantity text spatial relationships of objects and background"
    ).split()
]
T5_WORDS = ["a", "an", "the", "of", "in", "on", "and", "with", "photo", "cat", "dog", "red", "blue", "portrait"]


# --- tokenizers ---------------------------------------------------------------------------------------------------


def clip_tokenizer(pad_token: str = "<|endoftext|>") -> CLIPTokenizer:
    """tiny_models' character-level CLIP tokenizer. SD3's second one (OpenCLIP bigG) pads with "!" as the real one."""
    symbols = list(bytes_to_unicode().values())
    vocab_list = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: index for index, token in enumerate(vocab_list)}
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77, pad_token=pad_token)


def t5_tokenizer() -> T5Tokenizer:
    """A SentencePiece-style Unigram over printable Latin-1 characters and a few whole words. The ids start as T5's
    do (<pad>=0, </s>=1, <unk>=2) and every prompt ends with </s>; the sentinels (<extra_id_N>) are left out."""
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(chr(code), -5.0) for code in [*range(33, 127), *range(161, 256)]]
    # a word scores above its letters, so the Unigram model keeps it whole
    pieces += [("▁" + word, -3.0) for word in T5_WORDS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def _byte_level_merges(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """The 256 byte symbols, then each word built up one symbol at a time (one merge per prefix)."""
    vocab = {symbol: index for index, symbol in enumerate(bytes_to_unicode().values())}
    merges = []
    for word in words:
        for end in range(2, len(word) + 1):
            if word[:end] not in vocab:
                merges.append((word[: end - 1], word[end - 1]))
                vocab[word[:end]] = len(vocab)
    return vocab, merges


def qwen_tokenizer() -> Qwen2Tokenizer:
    """A byte-level BPE with Qwen's specials and chat template, and whole-word tokens for the Qwen-Image system
    prompt only, so that its prefix is 34 tokens as with the real tokenizer (checked below)."""
    vocab, merges = _byte_level_merges(QWEN_WORDS)
    for token in [*QWEN_SPECIAL_TOKENS, "<think>", "</think>"]:
        vocab[token] = len(vocab)
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        extra_special_tokens=QWEN_SPECIAL_TOKENS[1:],
        model_max_length=32768,
    )
    tokenizer.add_tokens(["<think>", "</think>"])
    tokenizer.chat_template = QWEN3_CHAT_TEMPLATE
    prefix_tokens = len(tokenizer(QWEN_IMAGE_SYSTEM_PREFIX).input_ids)
    if prefix_tokens != QWEN_IMAGE_SYSTEM_PREFIX_TOKENS:
        raise AssertionError(f"Qwen-Image's system prompt is {prefix_tokens} tokens, not the real tokenizer's 34")
    return tokenizer


# --- text encoders ------------------------------------------------------------------------------------------------


def _t5_encoder(vocab_size: int) -> T5EncoderModel:
    """T5 v1.1 (gated GELU, untied embeddings) as FLUX, SD3 and Chroma use it."""
    return T5EncoderModel(
        T5Config(
            vocab_size=vocab_size,
            d_model=T5_HIDDEN,
            d_kv=16,
            d_ff=128,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
            is_encoder_decoder=False,
            pad_token_id=0,
            eos_token_id=1,
        )
    )


def _qwen3_config(tokenizer: Qwen2Tokenizer, layers: int) -> Qwen3Config:
    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=QWEN_HIDDEN,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )


def _qwen25_vl_encoder(tokenizer: Qwen2Tokenizer) -> Qwen2_5_VLForConditionalGeneration:
    """Qwen2.5-VL with a one-block vision tower: Qwen-Image reads only the text path, but the class is the real one."""
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=QWEN_HIDDEN,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=4096,
            # multimodal RoPE splits head_dim / 2 = 8 frequencies over time, height, width (7B: 16, 24, 24 of 64)
            rope_parameters=dict(rope_type="default", rope_theta=1000000.0, mrope_section=[2, 3, 3]),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=dict(
            depth=1,
            hidden_size=QWEN_HIDDEN,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=QWEN_HIDDEN,
            fullatt_block_indexes=[0],
        ),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    return Qwen2_5_VLForConditionalGeneration(config)


def _qwen3_vl_encoder(tokenizer: Qwen2Tokenizer) -> Qwen3VLModel:
    ids = tokenizer.convert_tokens_to_ids
    config = Qwen3VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=QWEN_HIDDEN,
            intermediate_size=64,
            num_hidden_layers=max(KREA2_TEXT_TAPS) + 1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            max_position_embeddings=4096,
            # interleaved multimodal RoPE over head_dim / 2 = 8 frequencies (4B: 24, 20, 20 of 64)
            rope_parameters=dict(
                rope_type="default", rope_theta=5000000.0, mrope_section=[4, 2, 2], mrope_interleaved=True
            ),
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        ),
        vision_config=dict(
            depth=1,
            hidden_size=QWEN_HIDDEN,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=QWEN_HIDDEN,
            num_position_embeddings=64,
            deepstack_visual_indexes=[0],
        ),
        image_token_id=ids("<|image_pad|>"),
        video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    return Qwen3VLModel(config)


# --- VAEs ---------------------------------------------------------------------------------------------------------


def _kl_vae(scaling_factor: float, shift_factor: float) -> AutoencoderKL:
    """FLUX.1's and SD3's VAE layout (four blocks, so 8x, 16 latent channels, no quant convs) at tiny widths."""
    return _vae(
        widths=(8, 8, 16, 16),
        latent_channels=16,
        sample_size=1024,
        scaling_factor=scaling_factor,
        shift_factor=shift_factor,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )


def _flux1_vae() -> AutoencoderKL:
    return _kl_vae(scaling_factor=0.3611, shift_factor=0.1159)


def _sd3_vae() -> AutoencoderKL:
    return _kl_vae(scaling_factor=1.5305, shift_factor=0.0609)


def _qwen_image_vae() -> AutoencoderKLQwenImage:
    """Qwen-Image's causal 3D VAE: four levels (8x), 16 latent channels, the real per-channel latents mean/std.
    Its 3D convolutions take PyTorch's slow CPU path at these sizes, so it is the slowest part of a call even at
    base width 4."""
    return AutoencoderKLQwenImage(base_dim=4, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=1, attn_scales=[])


def _flux2_vae() -> AutoencoderKLFlux2:
    """FLUX.2's VAE: 8x, 32 latent channels, patchified 2x2 into 128 and batch-normed before the transformer."""
    return AutoencoderKLFlux2(
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=32,
        norm_num_groups=8,
        sample_size=1024,
        patch_size=(2, 2),
    )


# --- schedulers (the real checkpoints' scheduler_config.json values) ---------------------------------------------


def _flux_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """FLUX.1 [dev], Chroma and FLUX.2: a resolution-dependent shift. FLUX.1 and Chroma interpolate mu between
    256 and 4096 image tokens; FLUX.2 computes mu itself (compute_empirical_mu), which also needs dynamic shifting."""
    return FlowMatchEulerDiscreteScheduler(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    )


def _sd3_scheduler() -> FlowMatchEulerDiscreteScheduler:
    return FlowMatchEulerDiscreteScheduler(shift=3.0)


def _z_image_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """Z-Image-Turbo: a fixed shift of 3 (the pipeline passes mu, which a static shift ignores)."""
    return FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=False)


def _qwen_image_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """Qwen-Image: mu from 0.5 to 0.9 over 256 to 8192 image tokens, the sigmas stretched to end at 0.02."""
    return FlowMatchEulerDiscreteScheduler(
        shift=1.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=0.9,
        base_image_seq_len=256,
        max_image_seq_len=8192,
        shift_terminal=0.02,
        time_shift_type="exponential",
    )


def _krea2_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """Krea 2's resolution-aware shift, with the parameters its pipeline docstring names."""
    return FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=6400
    )


# --- families -----------------------------------------------------------------------------------------------------


def build_flux(out: Path, pipeline_class: type = FluxPipeline, name: str = "flux") -> Path:
    """FLUX.1 [dev]: CLIP-L pooled + T5 sequence, guidance-distilled (guidance_embeds)."""
    torch.manual_seed(SEED)
    tokenizer, tokenizer_2 = clip_tokenizer(), t5_tokenizer()
    pipe = pipeline_class(
        scheduler=_flux_scheduler(),
        vae=_flux1_vae(),
        text_encoder=CLIPTextModel(_clip_config(len(tokenizer), FLUX_CLIP_HIDDEN)),
        tokenizer=tokenizer,
        text_encoder_2=_t5_encoder(len(tokenizer_2)),
        tokenizer_2=tokenizer_2,
        transformer=FluxTransformer2DModel(
            patch_size=1,
            in_channels=64,  # 16 latent channels packed 2x2
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=T5_HIDDEN,
            pooled_projection_dim=FLUX_CLIP_HIDDEN,
            guidance_embeds=True,
            axes_dims_rope=(4, 6, 6),
        ),
    )
    pipe.save_pretrained(out / name)
    return out / name


def build_fluxkontext(out: Path) -> Path:
    """FLUX.1 Kontext: FLUX.1's modules, run by FluxKontextPipeline, which puts the image to edit beside the latents."""
    return build_flux(out, FluxKontextPipeline, "fluxkontext")


def build_chroma(out: Path) -> Path:
    """Chroma: FLUX.1's layout without CLIP; T5 only, attention-masked, real CFG."""
    torch.manual_seed(SEED)
    tokenizer = t5_tokenizer()
    pipe = ChromaPipeline(
        scheduler=_flux_scheduler(),
        vae=_flux1_vae(),
        text_encoder=_t5_encoder(len(tokenizer)),
        tokenizer=tokenizer,
        transformer=ChromaTransformer2DModel(
            patch_size=1,
            in_channels=64,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=T5_HIDDEN,
            axes_dims_rope=(4, 6, 6),
            approximator_num_channels=64,
            approximator_hidden_dim=32,
            approximator_layers=1,
        ),
    )
    pipe.save_pretrained(out / "chroma")
    return out / "chroma"


def build_sd3(out: Path) -> Path:
    """SD3 / SD3.5: CLIP-L and CLIP-G with projections (pooled) + T5 (sequence)."""
    torch.manual_seed(SEED)
    tokenizer, tokenizer_2, tokenizer_3 = clip_tokenizer(), clip_tokenizer(pad_token="!"), t5_tokenizer()
    pipe = StableDiffusion3Pipeline(
        transformer=SD3Transformer2DModel(
            sample_size=128,  # the default size: 128 latents = 1024 pixels, as the real one
            patch_size=2,
            in_channels=16,
            num_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=T5_HIDDEN,
            caption_projection_dim=32,
            pooled_projection_dim=CLIP_L_HIDDEN + CLIP_G_HIDDEN,
            out_channels=16,
            # the stored position table covers 96 x 96 patches (1536 pixels)
            pos_embed_max_size=96,
        ),
        scheduler=_sd3_scheduler(),
        vae=_sd3_vae(),
        text_encoder=CLIPTextModelWithProjection(_clip_config(len(tokenizer), CLIP_L_HIDDEN)),
        tokenizer=tokenizer,
        text_encoder_2=CLIPTextModelWithProjection(_clip_config(len(tokenizer_2), CLIP_G_HIDDEN)),
        tokenizer_2=tokenizer_2,
        text_encoder_3=_t5_encoder(len(tokenizer_3)),
        tokenizer_3=tokenizer_3,
    )
    pipe.save_pretrained(out / "sd3")
    return out / "sd3"


def build_zimage(out: Path) -> Path:
    """Z-Image (Turbo): Qwen3 (the base model, second-to-last hidden state) through the chat template."""
    torch.manual_seed(SEED)
    tokenizer = qwen_tokenizer()
    pipe = ZImagePipeline(
        scheduler=_z_image_scheduler(),
        vae=_flux1_vae(),  # Z-Image decodes with FLUX.1's VAE
        text_encoder=Qwen3Model(_qwen3_config(tokenizer, layers=2)),
        tokenizer=tokenizer,
        transformer=ZImageTransformer2DModel(
            all_patch_size=(2,),
            all_f_patch_size=(1,),
            in_channels=16,
            dim=32,
            n_layers=1,
            n_refiner_layers=1,
            n_heads=2,
            n_kv_heads=2,
            cap_feat_dim=QWEN_HIDDEN,
            axes_dims=[4, 6, 6],  # sums to the head width, dim / n_heads
            axes_lens=[1024, 512, 512],
        ),
    )
    pipe.save_pretrained(out / "zimage")
    return out / "zimage"


def build_qwenimage(out: Path) -> Path:
    """Qwen-Image: Qwen2.5-VL's last hidden state after the 34-token system prompt, and its own 3D VAE."""
    torch.manual_seed(SEED)
    tokenizer = qwen_tokenizer()
    pipe = QwenImagePipeline(
        scheduler=_qwen_image_scheduler(),
        vae=_qwen_image_vae(),
        text_encoder=_qwen25_vl_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=64,
            out_channels=16,
            num_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=QWEN_HIDDEN,
            guidance_embeds=False,
            axes_dims_rope=(4, 6, 6),
        ),
    )
    pipe.save_pretrained(out / "qwenimage")
    return out / "qwenimage"


def build_qwenimageedit(out: Path) -> Path:
    """Qwen-Image-Edit (2509, the Plus pipeline): Qwen-Image's modules, and a Qwen2-VL processor whose image half
    feeds the pictures to Qwen2.5-VL's vision tower (14 px patches, merged 2x2) beside the instruction."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    torch.manual_seed(SEED)
    tokenizer = qwen_tokenizer()
    # The Plus pipeline shows the encoder each picture at about 384² (CONDITION_IMAGE_SIZE): allowed up to that.
    sizes = dict(patch_size=14, merge_size=2, temporal_patch_size=2)
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=384 * 384, **sizes),
        video_processor=Qwen2VLVideoProcessor(**sizes),
        tokenizer=tokenizer,
        chat_template=tokenizer.chat_template,
    )
    pipe = QwenImageEditPlusPipeline(
        scheduler=_qwen_image_scheduler(),
        vae=_qwen_image_vae(),
        text_encoder=_qwen25_vl_encoder(tokenizer),
        tokenizer=tokenizer,
        processor=processor,
        transformer=QwenImageTransformer2DModel(
            patch_size=2,
            in_channels=64,
            out_channels=16,
            num_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=QWEN_HIDDEN,
            guidance_embeds=False,
            axes_dims_rope=(4, 6, 6),
        ),
    )
    pipe.save_pretrained(out / "qwenimageedit")
    return out / "qwenimageedit"


def build_flux2klein(out: Path) -> Path:
    """FLUX.2 [klein] (the step-distilled 4B layout): Qwen3 hidden states 9, 18, 27 stacked, 32-channel VAE."""
    torch.manual_seed(SEED)
    tokenizer = qwen_tokenizer()
    pipe = Flux2KleinPipeline(
        scheduler=_flux_scheduler(),
        vae=_flux2_vae(),
        text_encoder=Qwen3ForCausalLM(_qwen3_config(tokenizer, layers=KLEIN_TEXT_LAYERS)),
        tokenizer=tokenizer,
        transformer=Flux2Transformer2DModel(
            patch_size=1,
            in_channels=128,  # 32 latent channels patchified 2x2
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=len(KLEIN_TEXT_TAPS) * QWEN_HIDDEN,
            timestep_guidance_channels=32,
            axes_dims_rope=(4, 4, 4, 4),
            guidance_embeds=False,  # klein takes no guidance input; its CFG (base models only) is real
        ),
        is_distilled=True,
    )
    pipe.save_pretrained(out / "flux2klein")
    return out / "flux2klein"


def build_krea2(out: Path) -> Path:
    """Krea 2: Qwen3-VL hidden states from several layers, fused by the transformer; Qwen-Image's VAE."""
    torch.manual_seed(SEED)
    tokenizer = qwen_tokenizer()
    pipe = Krea2Pipeline(
        scheduler=_krea2_scheduler(),
        vae=_qwen_image_vae(),
        text_encoder=_qwen3_vl_encoder(tokenizer),
        tokenizer=tokenizer,
        transformer=Krea2Transformer2DModel(
            in_channels=64,
            num_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=64,
            timestep_embed_dim=32,
            text_hidden_dim=QWEN_HIDDEN,
            num_text_layers=len(KREA2_TEXT_TAPS),
            text_num_attention_heads=2,
            text_num_key_value_heads=2,
            text_intermediate_size=64,
            num_layerwise_text_blocks=1,
            num_refiner_text_blocks=1,
            axes_dims_rope=(4, 6, 6),
        ),
        text_encoder_select_layers=KREA2_TEXT_TAPS,
        is_distilled=False,
    )
    pipe.save_pretrained(out / "krea2")
    return out / "krea2"


BUILDERS: dict[str, Callable[[Path], Path]] = {
    "flux": build_flux,
    "fluxkontext": build_fluxkontext,
    "chroma": build_chroma,
    "sd3": build_sd3,
    "zimage": build_zimage,
    "qwenimage": build_qwenimage,
    "qwenimageedit": build_qwenimageedit,
    "flux2klein": build_flux2klein,
    "krea2": build_krea2,
}


def build_transformer_lora(model_dir: Path, target: Path, seed: int = 3) -> Path:
    """A rank-4 LoRA on a transformer's attention projections, saved as diffusers saves one for the family's pipeline
    (`transformer.` keys). Random B, so that it changes the image (PEFT starts B at zero)."""
    from diffusers import DiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    pipe = DiffusionPipeline.from_pretrained(model_dir, local_files_only=True)
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    with torch.no_grad():
        for name, parameter in pipe.transformer.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.5)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.transformer))
    target.parent.mkdir(parents=True, exist_ok=True)
    type(pipe).save_lora_weights(target.parent, transformer_lora_layers=layers, weight_name=target.name)
    return target


def build_all(out: Path, families: list[str] | None = None) -> dict[str, str]:
    out.mkdir(parents=True, exist_ok=True)
    built = {family: str(BUILDERS[family](out)) for family in families or BUILDERS}
    if "flux" in built:
        built["loras"] = str(build_transformer_lora(Path(built["flux"]), out / "loras" / "tiny_flux_detail.safetensors").parent)
    return built


def main(argv: list[str]) -> int:
    unknown = [family for family in argv[1:] if family not in BUILDERS]
    if not argv or unknown:
        print(f"usage: python -m diffusers_runner.tiny_families OUT_DIR [{'|'.join(BUILDERS)} ...]", file=sys.stderr)
        return 2
    print(json.dumps(build_all(Path(argv[0]), argv[1:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
