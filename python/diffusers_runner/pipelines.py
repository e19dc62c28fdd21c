"""Loads diffusers pipelines once and keeps them warm. The family comes from the folder's model_index.json, and
what to load for it from families.json."""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import diffusers
import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    StableDiffusionXLImg2ImgPipeline,
    TCDScheduler,
    UniPCMultistepScheduler,
)

from .control import ControlNets
from .device import DeviceChoice
from .families import FAMILIES, PIPELINE_FAMILIES, Family
from .single_file import SingleFileError, checkpoint_family, config_folder, is_single_file
from .protocol import ErrorCode

log = logging.getLogger("diffusers_runner.pipelines")

# name -> (scheduler class, extra config). The server's list (SCHEDULERS in src/generation.ts) must match these
# keys; which fit a family is families.json's to say. Trailing spacing, LCM and TCD are what the few-step SDXL
# recipes ask for (SDXL-Turbo, Lightning, Hyper-SD, LCM-LoRA); flow-matching families take flow_euler.
SCHEDULERS: dict[str, tuple[type, dict[str, Any]]] = {
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
    "dpmpp_2m": (DPMSolverMultistepScheduler, {}),
    "dpmpp_2m_karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}),
    "ddim": (DDIMScheduler, {}),
    "pndm": (PNDMScheduler, {}),
    "heun": (HeunDiscreteScheduler, {}),
    "unipc": (UniPCMultistepScheduler, {}),
    "euler_trailing": (EulerDiscreteScheduler, {"timestep_spacing": "trailing"}),
    "euler_a_trailing": (EulerAncestralDiscreteScheduler, {"timestep_spacing": "trailing"}),
    "ddim_trailing": (DDIMScheduler, {"timestep_spacing": "trailing"}),
    "lcm": (LCMScheduler, {}),
    "tcd": (TCDScheduler, {}),
    "flow_euler": (FlowMatchEulerDiscreteScheduler, {}),
}


class ModelLoadError(RuntimeError):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def detect_family(model_dir: str | os.PathLike[str]) -> str:
    """sd15, sdxl or sdxl_refiner: from a folder's model_index.json, or from a single file's tensor names."""
    if is_single_file(model_dir):
        if not Path(model_dir).is_file():
            raise ModelLoadError("model_not_found", f"checkpoint file {model_dir} does not exist")
        try:
            return checkpoint_family(model_dir)
        except SingleFileError as exc:
            raise ModelLoadError("model_load_failed", str(exc)) from exc
    index_path = Path(model_dir) / "model_index.json"
    if not Path(model_dir).is_dir():
        raise ModelLoadError("model_not_found", f"model folder {model_dir} does not exist")
    if not index_path.is_file():
        raise ModelLoadError(
            "model_load_failed",
            f"{model_dir} has no model_index.json: point models.yaml at a diffusers folder (save_pretrained layout) or a .safetensors/.ckpt checkpoint",
        )
    class_name = json.loads(index_path.read_text()).get("_class_name")
    family = PIPELINE_FAMILIES.get(class_name)
    if family is None:
        known = ", ".join(PIPELINE_FAMILIES)
        raise ModelLoadError("model_load_failed", f"{model_dir} holds a {class_name}; supported pipelines: {known}")
    return family


@dataclass
class LoadedPipeline:
    """A warm pipeline and the scheduler its folder configures, kept so each job can start a fresh one."""

    pipe: DiffusionPipeline
    path: str
    scheduler_config: dict[str, Any]
    scheduler_class: type
    attention_slicing: bool
    # The diffusers class that runs this family's image-to-image from the same modules; None where there is none.
    image_class: str | None = None
    # The same weights as an image-to-image pipeline, made on first use (from_pipe shares every module).
    _image_to_image: DiffusionPipeline | None = None
    # LoRA adapters loaded into this pipeline: adapter name -> the file it came from.
    loras: dict[str, str] = field(default_factory=dict)
    # The diffusers class that runs this family's inpainting (outpaint, masked repaint); None where there is none.
    inpaint_class: str | None = None
    # The same weights as an inpaint pipeline, made on first use and kept, like the image-to-image twin.
    _inpaint: DiffusionPipeline | None = None
    # ControlNet pipelines on the same weights, by (class, the ControlNet folders they carry): made once, kept.
    _controlled: dict[tuple[str, tuple[str, ...]], DiffusionPipeline] = field(default_factory=dict)
    # Other roles' pipelines on the same weights (an instruction edit's), by class: made once, kept.
    _roles: dict[str, DiffusionPipeline] = field(default_factory=dict)

    @classmethod
    def of(cls, pipe: DiffusionPipeline, path: str, attention_slicing: bool, image_class: str | None = None, inpaint_class: str | None = None) -> LoadedPipeline:
        return cls(pipe, os.path.realpath(path), dict(pipe.scheduler.config), type(pipe.scheduler), attention_slicing, image_class, inpaint_class=inpaint_class)

    def image_to_image(self) -> DiffusionPipeline:
        """This pipeline's image-to-image twin, on the scheduler this job set."""
        if self._image_to_image is None:
            if self.image_class is None:
                raise ModelLoadError("bad_request", f"{type(self.pipe).__name__} has no image-to-image pipeline in diffusers")
            self._image_to_image = self._twin(self.image_class)
        self._image_to_image.scheduler = self.pipe.scheduler
        return self._image_to_image

    def inpaint(self) -> DiffusionPipeline:
        """This pipeline's inpaint twin (image, mask_image, strength), on the scheduler this job set."""
        if self._inpaint is None:
            if self.inpaint_class is None:
                raise ModelLoadError("bad_request", f"{type(self.pipe).__name__} has no inpaint pipeline in diffusers")
            self._inpaint = self._twin(self.inpaint_class)
        self._inpaint.scheduler = self.pipe.scheduler
        return self._inpaint

    def as_class(self, class_name: str) -> DiffusionPipeline:
        """This pipeline run as `class_name` (itself when it is one already), on the scheduler this job set."""
        if type(self.pipe).__name__ == class_name:
            return self.pipe
        if class_name not in self._roles:
            self._roles[class_name] = self._twin(class_name)
        twin = self._roles[class_name]
        twin.scheduler = self.pipe.scheduler
        return twin

    def controlled(self, class_name: str, paths: tuple[str, ...], controlnet: Any) -> DiffusionPipeline:
        """This pipeline's ControlNet twin (class_name) carrying `controlnet` (one, or several as a multi-model), on
        the scheduler this job set. The base weights are shared; only the ControlNet's are its own."""
        key = (class_name, paths)
        if key not in self._controlled:
            self._controlled[key] = self._twin(class_name, controlnet=controlnet)
        twin = self._controlled[key]
        twin.scheduler = self.pipe.scheduler
        return twin

    def _twin(self, class_name: str, **extra: Any) -> DiffusionPipeline:
        # from_pipe hands the same modules (weights, LoRA adapters, attention processors) to the other class.
        twin = getattr(diffusers, class_name).from_pipe(self.pipe, **extra)
        twin.set_progress_bar_config(disable=True)
        return twin

    @property
    def can_slice(self) -> bool:
        """Attention slicing is a UNet's option; a transformer pipeline has nothing it would split."""
        return getattr(self.pipe, "unet", None) is not None

    def slice_attention(self) -> None:
        """Trades speed for a lower memory peak, after this pipeline has run out of memory once."""
        self.pipe.enable_attention_slicing()
        self.attention_slicing = True

    def use_scheduler(self, name: str | None) -> str:
        """Gives the pipe a fresh scheduler for this job and returns its name (ValueError for an unknown one)."""
        scheduler_name, self.pipe.scheduler = fresh_scheduler(name, self.scheduler_class, self.scheduler_config)
        return scheduler_name


@dataclass
class LoadedModel:
    family: str
    base: LoadedPipeline
    refiner: LoadedPipeline | None = None
    # What the weights run in: the family's dtype on this device (families.json).
    dtype: torch.dtype = torch.float32
    # The step cache hooked into the transformer ("first_block", "taylorseer"), or None.
    step_cache: str | None = None

    @property
    def spec(self) -> Family:
        return FAMILIES[self.family]

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def pipelines(self) -> list[LoadedPipeline]:
        return [self.base] if self.refiner is None else [self.base, self.refiner]


def _weights_variant(model_dir: str, dtype: torch.dtype) -> str | None:
    """Which weight files to load: fp16 ones when running in fp16, or when a folder holds nothing else
    (SDXL folders saved with variant="fp16" often do; they load fine in float32 on MPS and CPU, upcast)."""
    unet = Path(model_dir) / "unet"
    if not unet.is_dir():
        unet = Path(model_dir) / "transformer"
    has_fp16 = any(unet.glob("*.fp16.safetensors")) or any(unet.glob("*.fp16-*.safetensors"))
    has_full = any(
        path for path in unet.glob("diffusion_pytorch_model*") if ".fp16" not in path.name and path.suffix in (".safetensors", ".bin", ".json")
    )
    if has_fp16 and (dtype == torch.float16 or not has_full):
        return "fp16"
    return None


class ModelCache:
    """Keeps up to `capacity` models (each with its refiner) resident; a hit costs nothing."""

    def __init__(self, device: DeviceChoice, capacity: int = 1) -> None:
        self.device = device
        self.capacity = max(1, capacity)
        self.loads = 0
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        # ControlNet weights by folder, kept like the models (each is small beside its base).
        self.controlnets = ControlNets(device.device)
        # ESRGAN upscalers by file (tens of MB each), kept once loaded.
        self.upscalers: dict[str, Any] = {}

    def get(self, path: str, refiner_path: str | None, config_path: str | None = None, base_path: str | None = None) -> tuple[LoadedModel, float]:
        """Returns the model (with its refiner when asked for) and the seconds this call spent loading.
        `config_path`: for a single-file checkpoint, a diffusers folder whose configs and tokenizers to use.
        `base_path`: for a file holding the denoiser alone, the diffusers folder that supplies the rest."""
        started = time.perf_counter()
        key = os.path.realpath(path) + "".join(f"|{os.path.realpath(extra)}" for extra in (config_path, base_path) if extra)
        model = self._models.get(key)
        loaded_now = model is None
        if model is None:
            # Check the folder before evicting: a request for a broken model must not cost the warm one.
            family = detect_family(base_path or path)
            if base_path and not Path(path).is_file():
                raise ModelLoadError("model_not_found", f"file {path} does not exist")
            if family == "sdxl_refiner":
                raise ModelLoadError("model_load_failed", f"{path} is an SDXL refiner; use it as a model's refiner, not as the model")
            while len(self._models) >= self.capacity:
                self._evict_oldest()
            model = self._load_denoiser_file(path, base_path, family) if base_path else self._load_base(path, family, config_path)
            self._models[key] = model
            self.loads += 1
        else:
            self._models.move_to_end(key)
        if refiner_path and (model.refiner is None or model.refiner.path != os.path.realpath(refiner_path)):
            self._attach_refiner(model, path, refiner_path)
            self.loads += 1
            loaded_now = True
        return model, (time.perf_counter() - started) if loaded_now else 0.0

    def _evict_oldest(self) -> None:
        key, _ = self._models.popitem(last=False)
        log.info("evicting %s to make room", key)
        gc.collect()
        self.device.empty_cache()

    def _from_pretrained(self, cls: type, path: str, family: str, config_path: str | None = None, **extra: Any) -> DiffusionPipeline:
        dtype = self._dtype(family)
        # SD 1.5's safety checker blanks images and needs weights most local installs lack, whatever the layout.
        no_checker = {"safety_checker": None, "requires_safety_checker": False} if family == "sd15" else {}
        kwargs: dict[str, Any] = {"dtype": dtype, "local_files_only": True, **no_checker, **extra}
        try:
            if is_single_file(path):
                # Configs and tokenizers from the project (or the entry's `config` folder), never from the Hub.
                pipe = cls.from_single_file(path, config=str(config_path or config_folder(family)), **kwargs)
            else:
                variant = _weights_variant(path, dtype)
                if variant:
                    kwargs["variant"] = variant
                pipe = cls.from_pretrained(path, **kwargs)
        except SingleFileError as exc:
            raise ModelLoadError("model_load_failed", str(exc)) from exc
        except (OSError, ValueError, KeyError, RuntimeError, EnvironmentError) as exc:
            raise ModelLoadError("model_load_failed", f"could not load {path}: {type(exc).__name__}: {exc}") from exc
        pipe = pipe.to(self.device.device)
        options = self.device.options
        unet = getattr(pipe, "unet", None)
        if options.attention_slicing and unet is not None:
            # Slicing splits a UNet's attention; a transformer's attention has no such option in diffusers.
            pipe.enable_attention_slicing()
        if options.channels_last and unet is not None:
            # NHWC suits CUDA's tensor-core convolutions; diffusers' own speed guide does the same. A transformer has no convolutions to speed up.
            unet.to(memory_format=torch.channels_last)
        if options.compile:
            if unet is not None:
                pipe.unet = torch.compile(unet, fullgraph=True)
            elif hasattr(pipe.transformer, "compile_repeated_blocks"):
                # Compiling the one repeated block once is diffusers' advice for DiT models: the same speed, far less compile time.
                pipe.transformer.compile_repeated_blocks(fullgraph=True)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def _cache_steps(self, pipe: DiffusionPipeline, spec: Family) -> str | None:
        """KITTY_IMAGES_STEP_CACHE: reuse the transformer's work between steps where it changes little (opt-in: it
        trades a little fidelity for speed). FirstBlockCache skips the rest of a step when the first block's output
        barely moved; TaylorSeer predicts outputs for the steps between full ones."""
        kind = self.device.options.step_cache
        transformer = getattr(pipe, "transformer", None)
        if kind == "off" or not spec.step_cache or not hasattr(transformer, "enable_cache"):
            return None
        from diffusers.hooks import FirstBlockCacheConfig, TaylorSeerCacheConfig

        transformer.enable_cache(FirstBlockCacheConfig(threshold=0.2) if kind == "first_block" else TaylorSeerCacheConfig())
        return kind

    def _dtype(self, family: str) -> torch.dtype:
        spec = FAMILIES.get("sdxl" if family == "sdxl_refiner" else family)
        return spec.dtype(self.device.device) if spec else self.device.dtype

    def _loaded(self, pipe: DiffusionPipeline, path: str, family: str) -> LoadedPipeline:
        spec = FAMILIES.get(family)
        sliced = self.device.options.attention_slicing and getattr(pipe, "unet", None) is not None
        return LoadedPipeline.of(pipe, path, sliced, spec.pipelines.get("image") if spec else None, spec.pipelines.get("inpaint") if spec else None)

    def _load_base(self, path: str, family: str, config_path: str | None) -> LoadedModel:
        started = time.perf_counter()
        spec = FAMILIES[family]
        base = self._from_pretrained(getattr(diffusers, spec.pipelines["text"]), path, family, config_path)
        log.info("loaded %s (%s) in %.2fs", path, family, time.perf_counter() - started)
        return LoadedModel(family=family, base=self._loaded(base, path, family), dtype=self._dtype(family), step_cache=self._cache_steps(base, spec))

    def _load_denoiser_file(self, path: str, base_path: str, family: str) -> LoadedModel:
        """A transformer (or UNet) alone in one file, as most Civitai FLUX and Z-Image uploads are, in the base
        folder's pipeline: diffusers converts the original key layout, and takes diffusers' own as it is."""
        started = time.perf_counter()
        spec = FAMILIES[family]
        component = spec.denoiser
        index = json.loads((Path(base_path) / "model_index.json").read_text())
        class_name = index.get(component, [None, None])[1]
        model_class = getattr(diffusers, class_name or "", None)
        if model_class is None or not hasattr(model_class, "from_single_file"):
            raise ModelLoadError("model_load_failed", f"{base_path} names no {component} class that diffusers loads from a single file (model_index.json says {class_name!r})")
        dtype = self._dtype(family)
        try:
            denoiser = model_class.from_single_file(path, config=base_path, subfolder=component, torch_dtype=dtype, local_files_only=True)
        except (OSError, ValueError, KeyError, RuntimeError, EnvironmentError) as exc:
            raise ModelLoadError("model_load_failed", f"could not load {path} as {spec.label}'s {component} ({class_name}): {type(exc).__name__}: {exc}") from exc
        base = self._from_pretrained(getattr(diffusers, spec.pipelines["text"]), base_path, family, **{component: denoiser})
        log.info("loaded %s into %s (%s) in %.2fs", path, base_path, family, time.perf_counter() - started)
        return LoadedModel(family=family, base=self._loaded(base, path, family), dtype=dtype, step_cache=self._cache_steps(base, spec))

    def _attach_refiner(self, model: LoadedModel, path: str, refiner_path: str) -> None:
        started = time.perf_counter()
        if model.family != "sdxl":
            raise ModelLoadError("model_load_failed", f"a refiner only applies to SDXL models ({path} is {model.family})")
        if detect_family(refiner_path) != "sdxl_refiner":
            raise ModelLoadError("model_load_failed", f"{refiner_path} is not an SDXL refiner (StableDiffusionXLImg2ImgPipeline)")
        # The refiner shares the base's second text encoder and VAE, as in diffusers' SDXL docs.
        base = model.base.pipe
        refiner = self._from_pretrained(StableDiffusionXLImg2ImgPipeline, refiner_path, "sdxl_refiner", text_encoder_2=base.text_encoder_2, vae=base.vae)
        model.refiner = self._loaded(refiner, refiner_path, "sdxl_refiner")
        log.info("loaded refiner %s in %.2fs", refiner_path, time.perf_counter() - started)


def fresh_scheduler(name: str | None, original_class: type, original_config: dict[str, Any]):
    """A new scheduler per job: schedulers keep per-run state, and a reused one could leak it across jobs.
    No name means the model's own scheduler, as its folder configures it."""
    if name is None:
        return original_class.__name__, original_class.from_config(original_config)
    if name not in SCHEDULERS:
        raise ValueError(f"scheduler must be one of {', '.join(SCHEDULERS)} (got {name!r})")
    cls, extra = SCHEDULERS[name]
    return name, cls.from_config(original_config, **extra)
