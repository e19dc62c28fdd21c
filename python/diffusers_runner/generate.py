"""Runs one generate request on a warm pipeline: text- or image-to-image or an outpaint, a batch of seeds, the
refiner's pass, LoRAs; writes one PNG per image."""

from __future__ import annotations

import inspect
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import diffusers
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from PIL.PngImagePlugin import PngInfo

from .files import output_failed, write_whole
from .infotext import format_parameters, generation_settings
from .loras import apply_loras
from .control import UNION_MODES, PreparedControl, control_kwargs, describe_controls, is_union, request_controls
from .inpaint import composite_masked, load_mask
from .outpaint import Outpaint, check_canvas, composite, edge_canvas, outpaint_mask, request_outpaint
from .families import Family
from .pipelines import LoadedModel, LoadedPipeline, ModelCache, ModelLoadError
from .previews import write_preview
from .prompts import PromptEncoder, plain_prompt
from .protocol import DoneEvent, GenerateRequest, JobFailed, PreviewInfo, ProgressEvent, PromptNotes, RefinerSpec

log = logging.getLogger("diffusers_runner.generate")

SendProgress = Callable[[ProgressEvent], None]
SEED_SPACE = 2**32


def batch_seeds(seed: int, count: int) -> list[int]:
    """A batch's seeds: seed, seed+1, ... wrapping within 32 bits, so each stays a seed a request may name."""
    return [(seed + index) % SEED_SPACE for index in range(count)]


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class _Progress:
    """One rising step count across a batch's images and each image's base and refiner passes."""

    def __init__(self, job_id: str, send: SendProgress, images: int, base_steps: int, refiner_steps: int) -> None:
        self.job_id = job_id
        self.send = send
        self.images = images
        self.image = 0
        self.base_total = base_steps
        self.refiner_total = refiner_steps
        self.done_before = 0  # steps run by the batch's earlier images
        self.steps_run = 0

    def next_image(self, index: int) -> None:
        self.image = index
        self.done_before = self.steps_run

    def base_step(self, pipe, step: int) -> None:
        # The pipeline's own count wins: strength and denoising_end trim the schedule, some schedulers change it.
        self.base_total = pipe.num_timesteps
        self._send(self.done_before + step)

    def refiner_step(self, pipe, step: int) -> None:
        self.refiner_total = pipe.num_timesteps
        self._send(self.done_before + self.base_total + step)

    def _send(self, steps_run: int) -> None:
        self.steps_run = steps_run
        per_image = self.base_total + self.refiner_total
        total = self.done_before + per_image * (self.images - self.image)
        self.send(ProgressEvent(type="progress", jobId=self.job_id, step=steps_run, totalSteps=total))


def _step_callback(cancel: threading.Event, report: Callable[[Any, int], None]):
    def on_step_end(pipe, step_index: int, _timestep, callback_kwargs: dict[str, Any]):
        report(pipe, step_index + 1)
        if cancel.is_set():
            # diffusers checks this flag at the top of each denoising step.
            pipe._interrupt = True
        return callback_kwargs

    return on_step_end


def _refiner_mode(refiner: RefinerSpec) -> str:
    return refiner.get("mode", "ensemble")


def _schedule_length(steps: int, fraction: float) -> int:
    # A pass that runs only `fraction` of its schedule (the refiner's tail) needs a schedule of steps / fraction
    # to run about `steps` (round, not ceil: 6 / 0.2 is 30.000000000000004).
    return max(1, round(steps / fraction))


def strength_steps(family: Family, steps: int, strength: float) -> int:
    """The steps an image-to-image or inpaint pass at `strength` runs of a `steps` schedule. SD and SDXL run
    int(steps * strength); the flow-matching pipelines skip int(steps - steps * strength) and run the rest."""
    if family.denoiser == "unet":
        return min(int(steps * strength), steps)
    return steps - int(max(steps - steps * strength, 0))


def _strength_schedule_length(steps: int, strength: float) -> int:
    """The schedule an image-to-image pass at `strength` needs to run exactly `steps`: diffusers runs
    int(schedule * strength) of it, so 1 step at 0.3 needs 4, not round(1 / 0.3) = 3 (which runs none)."""
    length = _schedule_length(steps, strength)
    while int(length * strength) < steps:
        length += 1
    return length


@dataclass
class _Job:
    """What every image of one request shares: the model, the prompt embeddings per pipeline, the start image."""

    request: GenerateRequest
    model: LoadedModel
    cancel: threading.Event
    progress: _Progress
    init_image: Image.Image | None
    embeddings: dict[int, tuple[dict[str, Any], int]]
    # An outpaint or an inpaint: the family's inpaint pipeline paints `canvas` where `mask` is white. An outpaint's
    # init_image is the source at its own size; an inpaint's canvas is init_image, and soft_mask blends the result.
    outpaint: Outpaint | None = None
    canvas: Image.Image | None = None
    mask: Image.Image | None = None
    soft_mask: Image.Image | None = None
    # An instruction edit: the image to edit and its references, at the job's size (the prompt is the instruction).
    edit_images: list[Image.Image] | None = None
    # ControlNet: the prepared maps, and (pipeline class, ControlNet folders, the network(s), union?) to run them.
    controls: list[PreparedControl] = field(default_factory=list)
    control: tuple[str, tuple[str, ...], Any, bool] | None = None
    # Filled when the prompt is encoded for a family that takes it whole (see _text_prompt).
    prompt_notes: PromptNotes = field(default_factory=dict)

    def prompt_kwargs(self, pipe: Any) -> tuple[dict[str, Any], int]:
        """Prompt embeddings for this pipeline (long prompts chunked, emphasis applied), encoded once per job; for a
        family whose encoder is not CLIP, the prompt text and the family's guidance arguments (see _text_prompt)."""
        if id(pipe) not in self.embeddings and not self.model.spec.uses_clip_prompts:
            kwargs, tokens, notes = _text_prompt(pipe, self.model.spec, self.request)
            self.embeddings[id(pipe)] = (kwargs, tokens)
            self.prompt_notes.update(notes)
        if id(pipe) not in self.embeddings:
            positive, negative = PromptEncoder(pipe).encode_pair(self.request["prompt"], self.request.get("negativePrompt"))
            kwargs: dict[str, Any] = {"prompt_embeds": positive.embeds, "negative_prompt_embeds": negative.embeds}
            if positive.pooled is not None:
                kwargs.update(pooled_prompt_embeds=positive.pooled, negative_pooled_prompt_embeds=negative.pooled)
            kwargs["guidance_scale"] = self.request["cfgScale"]
            self.embeddings[id(pipe)] = (kwargs, positive.tokens)
        return self.embeddings[id(pipe)]


def _accepts(pipe: Any, argument: str) -> bool:
    return argument in inspect.signature(type(pipe).__call__).parameters


def _text_prompt(pipe: Any, family: Family, request: GenerateRequest) -> tuple[dict[str, Any], int, PromptNotes]:
    """A T5 or LLM encoder takes the prompt whole, up to the family's token limit; emphasis syntax, which such an
    encoder cannot weight, is taken out rather than fed to it as text. Guidance follows the family: real CFG,
    distilled guidance (a negative prompt then runs true CFG), or the pipeline's true_cfg_scale."""
    text, stripped = plain_prompt(request["prompt"])
    negative = request.get("negativePrompt")
    kwargs: dict[str, Any] = {"prompt": text}
    if family.guidance == "true_cfg":
        kwargs["true_cfg_scale"] = request["cfgScale"]
    else:
        kwargs["guidance_scale"] = request["cfgScale"]
    if negative:
        kwargs["negative_prompt"] = plain_prompt(negative)[0]
        if family.negative_prompt == "true_cfg":
            kwargs["true_cfg_scale"] = family.true_cfg_scale
    elif family.guidance == "true_cfg" and request["cfgScale"] > family.guidance_above:
        # Qwen-Image runs its true CFG only when given a negative prompt: a blank one asks for guidance alone.
        kwargs["negative_prompt"] = " "
    if family.max_tokens and _accepts(pipe, "max_sequence_length"):
        kwargs["max_sequence_length"] = family.max_tokens
    tokens = prompt_token_count(pipe, family, text)
    notes: PromptNotes = {}
    if family.max_tokens and tokens > family.max_tokens:
        notes["tokensDropped"] = tokens - family.max_tokens
    if stripped:
        notes["emphasisStripped"] = True
    return kwargs, tokens, notes


def prompt_token_count(pipe: Any, family: Family, text: str) -> int:
    """The prompt's tokens as the family's long-context tokenizer counts them (T5's, or the LLM's)."""
    tokenizer = getattr(pipe, family.tokenizer, None)
    if tokenizer is None:
        return 0
    return len(tokenizer(text, add_special_tokens=False).input_ids)


def run_generate(request: GenerateRequest, cache: ModelCache, cancel: threading.Event, send: SendProgress) -> DoneEvent:
    if (request.get("upscale") or {}).get("mode") == "esrgan":
        from .esrgan import run_esrgan

        return run_esrgan(request, cache, cancel, send)
    job_id = request["jobId"]
    model_spec = request["model"]
    refiner = request.get("refiner")
    refiner_path = model_spec.get("refinerPath") if refiner is not None else None
    if refiner is not None and not refiner_path:
        raise JobFailed("bad_request", f"model {model_spec['name']} has no refiner configured in models.yaml")
    output_paths = request.get("outputPaths") or [request["outputPath"]]
    preview_paths: list[str | None] = list(request.get("previewPaths") or [])
    preview_paths += [None] * (len(output_paths) - len(preview_paths))
    outpaint = request_outpaint(request)
    init_image = _load_init_image(request, crop=outpaint is None)
    if outpaint is not None:
        check_canvas(outpaint, init_image.size, request["width"], request["height"])
    masks = load_mask(request)
    if masks is not None and outpaint is not None:
        raise JobFailed("bad_request", "mask and outpaint do not go together: an outpaint masks its new border itself")
    controls = request_controls(request)
    if controls and (masks is not None or outpaint is not None):
        raise JobFailed("bad_request", "control goes with text-to-image and image-to-image here, not with mask or outpaint")
    edit_images = _load_edit_images(request)
    if edit_images is not None and (init_image is not None or controls):
        raise JobFailed("bad_request", "an edit takes its images alone: no initImage, mask, outpaint or control beside them")

    try:
        model, load_seconds = cache.get(model_spec["path"], refiner_path, model_spec.get("configPath"), model_spec.get("basePath"))
    except ModelLoadError as exc:
        raise JobFailed(exc.code, str(exc)) from exc
    if request.get("scheduler") and request["scheduler"] not in model.spec.schedulers:
        raise JobFailed("bad_request", f"scheduler {request['scheduler']} does not fit {model.spec.label}; it takes {', '.join(model.spec.schedulers)}")
    if edit_images is None and model.spec.edit_only:
        raise JobFailed("bad_request", f"{model.spec.label} edits images only: send an edit (edit_image)")
    if edit_images is not None:
        if "edit" not in model.spec.pipelines:
            raise JobFailed("bad_request", f"{model.spec.label} does not edit images by instruction")
        if len(edit_images) > model.spec.edit_images:
            raise JobFailed("bad_request", f"{model.spec.label} takes {model.spec.edit_images} image(s) per edit (got {len(edit_images)})")
    if (outpaint is not None or masks is not None) and model.base.inpaint_class is None:
        # The server refuses this before queueing; this is the backstop.
        raise JobFailed("bad_request", f"{model.spec.label} cannot {'outpaint' if outpaint else 'inpaint'}: its family has no inpaint pipeline in diffusers")

    try:
        scheduler_name = model.base.use_scheduler(request.get("scheduler"))
    except ValueError as exc:
        raise JobFailed("bad_request", str(exc)) from exc
    lora_seconds = apply_loras(model, request.get("loras") or [])

    if cancel.is_set():
        raise JobFailed("cancelled", "cancelled before it started")

    init = request.get("initImage")
    # An outpaint is an inpaint pass at initImage's strength: it runs what image-to-image at that strength runs.
    base_steps = strength_steps(model.spec, request["steps"], init["strength"]) if init else request["steps"]
    progress = _Progress(job_id, send, len(output_paths), base_steps, refiner["steps"] if refiner else 0)
    job = _Job(request, model, cancel, progress, init_image, {})
    if outpaint is not None:
        job.outpaint, job.canvas, job.mask = outpaint, edge_canvas(init_image, outpaint), outpaint_mask(init_image.size, outpaint)
    elif masks is not None:
        job.canvas, (job.mask, job.soft_mask) = init_image, masks
    if controls:
        job.controls, job.control = controls, _control_networks(model, cache, controls, image=init_image is not None)
    job.edit_images = edit_images
    inference_seconds = save_seconds = 0.0
    width = height = 0
    previews: list[PreviewInfo | None] = []
    seeds = batch_seeds(request["seed"], len(output_paths))
    for index, (seed, path, preview_path) in enumerate(zip(seeds, output_paths, preview_paths)):
        progress.next_image(index)
        started = time.perf_counter()
        image = _denoise_within_memory(job, seed, cache)
        if outpaint is not None:
            image = composite(image, init_image, outpaint)
        elif job.soft_mask is not None:
            image = composite_masked(image, init_image, job.soft_mask)
        inference_seconds += time.perf_counter() - started
        started = time.perf_counter()
        _save_png(image, request, path, seed, model.spec, scheduler_name)
        previews.append(_save_preview(image, preview_path))
        save_seconds += time.perf_counter() - started
        width, height = image.width, image.height

    return DoneEvent(
        type="done",
        jobId=job_id,
        outputPath=output_paths[0],
        width=width,
        height=height,
        seed=request["seed"],
        family=model.family,
        scheduler=scheduler_name,
        device=cache.device.device,
        dtype=model.dtype_name,
        options=_options_record(model, cache, outpainted=outpaint is not None, inpainted=masks is not None, controlled=bool(controls)),
        modelLoads=cache.loads,
        stepsRun=progress.steps_run,
        promptTokens=job.prompt_kwargs(model.base.pipe)[1],
        **({"promptNotes": job.prompt_notes} if job.prompt_notes else {}),
        previews=previews,
        timings={
            "loadSeconds": round(load_seconds + lora_seconds, 4),
            "inferenceSeconds": round(inference_seconds, 4),
            "saveSeconds": round(save_seconds, 4),
        },
    )


def _load_edit_images(request: GenerateRequest) -> list[Image.Image] | None:
    """An instruction edit's images, upright and RGB, each fitted to the job's size (the first sets it: the server
    sizes the job after it); None for a job that is no edit."""
    spec = request.get("edit")
    if not spec:
        return None
    images = []
    for index, path in enumerate(spec["images"]):
        try:
            with Image.open(path) as source:
                image = ImageOps.exif_transpose(source).convert("RGB")
        except (OSError, UnidentifiedImageError) as exc:
            raise JobFailed("bad_request", f"edit image {index + 1} ({path}) could not be read as an image: {exc}") from exc
        size = (request["width"], request["height"])
        images.append(image if image.size == size else ImageOps.fit(image, size, Image.Resampling.LANCZOS))
    if not images:
        raise JobFailed("bad_request", "an edit needs the image to edit")
    return images


def _load_init_image(request: GenerateRequest, crop: bool = True) -> Image.Image | None:
    """The start image, upright and RGB; with `crop`, cropped to the asked aspect ratio around its centre and
    resized: never a crash on a mismatch. An outpaint takes it at its own size."""
    init = request.get("initImage")
    if not init:
        return None
    try:
        with Image.open(init["path"]) as source:
            image = ImageOps.exif_transpose(source).convert("RGB")
    except (OSError, UnidentifiedImageError) as exc:
        raise JobFailed("bad_request", f"the init image {init['path']} could not be read as an image: {exc}") from exc
    if not crop:
        return image
    size = (request["width"], request["height"])
    return image if image.size == size else ImageOps.fit(image, size, Image.Resampling.LANCZOS)


def _denoise_within_memory(job: _Job, seed: int, cache: ModelCache) -> Any:
    """Runs one image; a first out-of-memory turns attention slicing on for this model (it stays on) and tries once more."""
    for attempt in (1, 2):
        try:
            return _denoise(job, seed)
        except JobFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any library failure becomes a job error the agent can read
            if not _is_out_of_memory(exc):
                raise JobFailed("generation_failed", f"{type(exc).__name__}: {exc}") from exc
            cache.device.empty_cache()
            unsliced = [pipeline for pipeline in job.model.pipelines() if not pipeline.attention_slicing and pipeline.can_slice]
            if attempt == 2 or not unsliced:
                size = f"{job.request['width']}x{job.request['height']}"
                raise JobFailed("out_of_memory", f"{cache.device.device} ran out of memory at {size} even with attention slicing: try a smaller size") from exc
            log.warning("job %s ran out of memory; slicing attention from now on and trying again", job.request["jobId"])
            for pipeline in unsliced:
                pipeline.slice_attention()
            # The failed run left its state in the scheduler: start the retry on a fresh one.
            job.model.base.use_scheduler(job.request.get("scheduler"))
    raise AssertionError("unreachable")


def _control_networks(model: LoadedModel, cache: ModelCache, controls: list[PreparedControl], image: bool) -> tuple[str, tuple[str, ...], Any, bool]:
    """The ControlNet pipeline class for this family and job, and the network(s) it carries: one ControlNet, several
    as one multi-model (each entry its own, in order), or one union network for every map."""
    paths = tuple(control.spec["path"] for control in controls)
    nets = [cache.controlnets.get(path, model.dtype) for path in paths]
    union = is_union(nets[0])
    if any(is_union(net) != union for net in nets) or (union and len(set(paths)) > 1):
        raise JobFailed("bad_request", "a union ControlNet takes every map itself: give all control entries the same union network, or none")
    if union:
        kinds = nets[0].config.num_control_type
        for control in controls:
            if UNION_MODES.get(control.spec["type"], 3) >= kinds:
                raise JobFailed("bad_request", f"this union ControlNet knows {kinds} control types; '{control.spec['type']}' is not one of them")
    role = ("controlUnion" if union else "control") + ("Image" if image else "")
    class_name = model.spec.pipelines.get(role)
    if class_name is None:
        raise JobFailed("bad_request", f"{model.spec.label} has no {'union ' if union else ''}ControlNet pipeline{' for image-to-image' if image else ''} in diffusers")
    if not model.spec.control_schedule and any((control.spec["start"], control.spec["end"]) != (0, 1) for control in controls):
        raise JobFailed("bad_request", f"{model.spec.label}'s ControlNet steers the whole schedule: leave control start and end at 0 and 1")
    if union or len(nets) == 1:
        return class_name, paths[:1] if union else paths, nets[0], union
    if "controlMulti" not in model.spec.pipelines:
        raise JobFailed("bad_request", f"{model.spec.label} takes one control map at a time")
    # Several ControlNets run as the family's multi-model (FLUX has its own), each entry its own net, in order.
    return class_name, paths, getattr(diffusers, model.spec.pipelines.get("controlMulti", "MultiControlNetModel"))(nets), union


def _options_record(model: LoadedModel, cache: ModelCache, outpainted: bool = False, inpainted: bool = False, controlled: bool = False) -> dict[str, bool]:
    """The options this image was really made with: slicing may have been turned on after an out-of-memory.
    An outpaint adds outpaintComposited: the source's pixels were put back exactly over the generated canvas; an
    inpaint adds inpaintComposited: the start image's pixels were put back wherever the mask is black."""
    vae = model.base.pipe.vae
    return {
        **cache.device.options.as_record(),
        "attentionSlicing": any(pipeline.attention_slicing for pipeline in model.pipelines()),
        # diffusers decodes in float32 when a float16 VAE is marked force_upcast (SDXL's overflows in float16).
        "vaeUpcast": cache.device.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False)),
        "vaeTiling": bool(getattr(vae, "use_tiling", False)),
        "firstBlockCache": model.step_cache == "first_block",
        "taylorSeerCache": model.step_cache == "taylorseer",
        **({"outpaintComposited": True} if outpainted else {}),
        **({"inpaintComposited": True} if inpainted else {}),
        **({"controlNet": True} if controlled else {}),
    }


# Past about 1.5 megapixels a whole-image VAE decode is the job's memory peak (an SDXL decode at 2048² wants some
# 30 GB in float32); tiles cap it, at a cost in speed too small to matter against the denoising.
VAE_TILING_ABOVE_PIXELS = 1_500_000


def use_vae_tiling(vae: Any, width: int, height: int) -> bool:
    """Tiles this job's VAE decode when the image is large; below the threshold the whole image decodes at once."""
    if not hasattr(vae, "enable_tiling"):
        return False
    tiled = width * height > VAE_TILING_ABOVE_PIXELS
    vae.enable_tiling() if tiled else vae.disable_tiling()
    return tiled


def _check_cancel(job: _Job) -> None:
    if job.cancel.is_set():
        raise JobFailed("cancelled", "cancelled while running")


def _denoise(job: _Job, seed: int) -> Any:
    """One image: the base pass (text- or image-to-image, or an outpaint's inpaint), then the refiner's pass when
    asked for. An outpaint's source pixels are put back by the caller, after the refiner too."""
    request = job.request
    refiner = request.get("refiner")
    ensemble = refiner is not None and _refiner_mode(refiner) == "ensemble"
    # A CPU generator gives the same latents for a seed on CUDA, MPS and CPU alike.
    generator = torch.Generator(device="cpu").manual_seed(seed)
    base = job.model.base
    use_vae_tiling(base.pipe.vae, request["width"], request["height"])
    prompt, _ = job.prompt_kwargs(base.pipe)
    kwargs: dict[str, Any] = {
        **prompt,
        "generator": generator,
        "num_inference_steps": request["steps"],
        "callback_on_step_end": _step_callback(job.cancel, job.progress.base_step),
    }
    if job.edit_images is not None:
        pipe = base.as_class(job.model.spec.pipelines["edit"])
        kwargs.update(image=job.edit_images[0] if job.model.spec.edit_images == 1 else job.edit_images, width=request["width"], height=request["height"])
        # The images come fitted to the job's size: FLUX.1 Kontext would otherwise pick a size of its own for them,
        # and scale the output to a megapixel.
        if _accepts(pipe, "_auto_resize"):
            kwargs["_auto_resize"] = False
        if _accepts(pipe, "max_area"):
            kwargs["max_area"] = request["width"] * request["height"]
    elif job.control is not None:
        class_name, paths, network, union = job.control
        pipe = base.controlled(class_name, paths, network)
        image_key = "control_image" if _accepts(pipe, "control_image") else "image"
        kwargs.update(control_kwargs(job.controls, union, image_key, schedule=job.model.spec.control_schedule))
        if job.init_image is not None:
            kwargs.update(image=job.init_image, strength=request["initImage"]["strength"])
        if _accepts(pipe, "width"):
            kwargs.update(width=request["width"], height=request["height"])
    elif job.init_image is None:
        pipe = base.pipe
        kwargs.update(width=request["width"], height=request["height"])
        # FLUX.1 Kontext scales what it makes to a megapixel unless told the area.
        if _accepts(pipe, "max_area"):
            kwargs["max_area"] = request["width"] * request["height"]
    elif job.mask is not None:
        pipe = base.inpaint()
        kwargs.update(image=job.canvas, mask_image=job.mask, strength=request["initImage"]["strength"])
        if _accepts(pipe, "width"):
            kwargs.update(width=request["width"], height=request["height"])
    else:
        pipe = base.image_to_image()
        kwargs.update(image=job.init_image, strength=request["initImage"]["strength"])
        # SD's image-to-image takes the start image's size; FLUX's and its successors' default to 1024² unless told.
        if _accepts(pipe, "width"):
            kwargs.update(width=request["width"], height=request["height"])
    if ensemble:
        kwargs.update(denoising_end=refiner["switchAt"], output_type="latent")
    result = pipe(**kwargs)
    _check_cancel(job)
    if refiner is None:
        return result.images[0]

    # ModelCache.get attached the refiner: run_generate asked for it whenever the request has one.
    assert job.model.refiner is not None
    refiner_pipe = job.model.refiner
    refiner_pipe.use_scheduler(request.get("scheduler"))
    refiner_prompt, _ = job.prompt_kwargs(refiner_pipe.pipe)
    refiner_kwargs: dict[str, Any] = {
        **refiner_prompt,
        "generator": generator,
        "image": result.images,
        "guidance_scale": refiner["cfgScale"],
        "callback_on_step_end": _step_callback(job.cancel, job.progress.refiner_step),
    }
    if ensemble:
        refiner_kwargs.update(num_inference_steps=_schedule_length(refiner["steps"], 1 - refiner["switchAt"]), denoising_start=refiner["switchAt"])
    else:
        # Polish: a short, light image-to-image pass over the finished image.
        strength = refiner.get("strength", 0.3)
        refiner_kwargs.update(num_inference_steps=_strength_schedule_length(refiner["steps"], strength), strength=strength)
    result = refiner_pipe.pipe(**refiner_kwargs)
    _check_cancel(job)
    return result.images[0]


def _save_png(image, request: GenerateRequest, output_path: str, seed: int, family: Family, scheduler_name: str) -> None:
    # AUTOMATIC1111's text first: PNG-info viewers, Civitai and the other UIs' importers read this one.
    parameters = _parameters_text(request, seed, scheduler_name, image.width, image.height, family)
    _write_png(image, output_path, parameters, {"family": family.name, "seed": seed, "steps": request["steps"], "cfgScale": request["cfgScale"], "scheduler": scheduler_name}, request)


def save_image_files(image: Image.Image, request: GenerateRequest, output_path: str, preview_path: str | None, postprocess: tuple[str, int]) -> PreviewInfo | None:
    """An image no pipeline made (an ESRGAN upscale): the PNG with A1111's extras text (`Postprocess upscaler`),
    and its preview."""
    upscaler, scale = postprocess
    parameters = f"{request['prompt']}\nPostprocess upscale by: {scale}, Postprocess upscaler: {upscaler}, Size: {image.width}x{image.height}"
    _write_png(image, output_path, parameters, {"family": "esrgan", "seed": request["seed"], "upscaler": upscaler, "scale": scale}, request)
    return _save_preview(image, preview_path)


def _write_png(image: Image.Image, output_path: str, parameters: str, facts: dict[str, Any], request: GenerateRequest) -> None:
    info = PngInfo()
    info.add_text("parameters", parameters)
    info.add_text("kitty-images", json.dumps({"prompt": request["prompt"], "negativePrompt": request.get("negativePrompt"), "model": request["model"]["name"], **facts}))
    try:
        # Rename is atomic: the server never sees half a PNG.
        write_whole(output_path, lambda partial: image.save(partial, format="PNG", pnginfo=info))
    except OSError as exc:
        raise output_failed(exc, output_path) from exc


def _save_preview(image: Image.Image, path: str | None) -> PreviewInfo | None:
    """A preview is a convenience: failing to write one leaves the image without it, never fails the job."""
    if path is None:
        return None
    try:
        return write_preview(image, path)
    except OSError as exc:
        log.warning("could not write the preview %s: %s", path, exc)
        return None


def _parameters_text(request: GenerateRequest, seed: int, scheduler_name: str, width: int, height: int, family: Family) -> str:
    extra: dict[str, Any] = {}
    cfg_scale = request["cfgScale"]
    if family.guidance == "distilled":
        # Forge's words for FLUX: "CFG scale" is the true CFG (1: none), the distilled guidance has its own key.
        extra["Distilled CFG Scale"] = float(cfg_scale)
        cfg_scale = family.true_cfg_scale if request.get("negativePrompt") and family.true_cfg_scale else 1.0
    init = request.get("initImage")
    if init:
        extra["Denoising strength"] = float(init["strength"])
    if request.get("outpaint"):
        extra["Outpaint"] = Outpaint.of(request["outpaint"]).describe()
    if request.get("mask"):
        extra["Mask blur"] = int(request["mask"].get("blur", 0))
    extra.update(describe_controls(request.get("control") or []))
    if request.get("edit"):
        extra["Edit images"] = len(request["edit"]["images"])
    refiner = request.get("refiner")
    refiner_path = request["model"].get("refinerPath")
    if refiner is not None and refiner_path:
        extra["Refiner"] = os.path.basename(os.path.normpath(refiner_path))
        if _refiner_mode(refiner) == "ensemble":
            extra["Refiner switch at"] = float(refiner["switchAt"])
        else:
            extra["Refiner mode"] = "polish"
            extra["Refiner strength"] = float(refiner.get("strength", 0.3))
    loras = request.get("loras") or []
    if loras:
        # A1111 names LoRAs in the prompt (<lora:name:weight>); here they are settings, readable the same way.
        extra["Lora weights"] = ", ".join(f"{lora['name']}: {lora['weight']:g}" for lora in loras)
    settings = generation_settings(
        steps=request["steps"],
        scheduler=scheduler_name,
        cfg_scale=cfg_scale,
        seed=seed,
        width=width,
        height=height,
        model=request["model"]["name"],
        extra=extra,
    )
    return format_parameters(request["prompt"], request.get("negativePrompt"), settings)
