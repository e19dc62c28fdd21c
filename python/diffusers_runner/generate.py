"""Runs one generate request on a warm pipeline and writes the PNG."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from typing import Any, Callable

import torch
from PIL.PngImagePlugin import PngInfo

from .pipelines import LoadedModel, ModelCache, ModelLoadError
from .infotext import format_parameters, generation_settings
from .prompts import PromptEncoder
from .protocol import DoneEvent, GenerateRequest, JobFailed, ProgressEvent, RefinerSpec

log = logging.getLogger("diffusers_runner.generate")

SendProgress = Callable[[ProgressEvent], None]


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in str(exc).lower()


class _Progress:
    """One rising step count across base and refiner, sent as progress events."""

    def __init__(self, job_id: str, send: SendProgress, base_steps: int, refiner_steps: int) -> None:
        self.job_id = job_id
        self.send = send
        self.base_total = base_steps
        self.refiner_steps = refiner_steps
        self.steps_run = 0

    def base_step(self, pipe, step: int) -> None:
        # The pipeline's own count wins: denoising_end trims the schedule and some schedulers change its length.
        self.base_total = pipe.num_timesteps
        self.steps_run = step
        self._send(step, self.base_total + self.refiner_steps)

    def refiner_step(self, pipe, step: int) -> None:
        self.steps_run = self.base_total + step
        self._send(self.steps_run, self.base_total + pipe.num_timesteps)

    def _send(self, step: int, total: int) -> None:
        self.send(ProgressEvent(type="progress", jobId=self.job_id, step=step, totalSteps=total))


def _step_callback(cancel: threading.Event, report: Callable[[Any, int], None]):
    def on_step_end(pipe, step_index: int, _timestep, callback_kwargs: dict[str, Any]):
        report(pipe, step_index + 1)
        if cancel.is_set():
            # diffusers checks this flag at the top of each denoising step.
            pipe._interrupt = True
        return callback_kwargs

    return on_step_end


def _refiner_schedule_length(refiner: RefinerSpec) -> int:
    # With denoising_start the refiner runs only the tail of its schedule; size the schedule so the tail has
    # about `steps` (round, not ceil: 6 / 0.2 is 30.000000000000004 in floating point).
    return max(1, round(refiner["steps"] / (1 - refiner["switchAt"])))


def run_generate(request: GenerateRequest, cache: ModelCache, cancel: threading.Event, send: SendProgress) -> DoneEvent:
    job_id = request["jobId"]
    model_spec = request["model"]
    wants_refiner = request.get("refiner") is not None
    refiner_path = model_spec.get("refinerPath") if wants_refiner else None
    if wants_refiner and not refiner_path:
        raise JobFailed("bad_request", f"model {model_spec['name']} has no refiner configured in models.yaml")

    try:
        model, load_seconds = cache.get(model_spec["path"], refiner_path)
    except ModelLoadError as exc:
        raise JobFailed(exc.code, str(exc)) from exc

    try:
        scheduler_name = model.base.use_scheduler(request.get("scheduler"))
    except ValueError as exc:
        raise JobFailed("bad_request", str(exc)) from exc

    if cancel.is_set():
        raise JobFailed("cancelled", "cancelled before it started")

    started = time.perf_counter()
    image, steps_run, prompt_tokens = _denoise_within_memory(request, model, cache, cancel, send)
    inference_seconds = time.perf_counter() - started

    started = time.perf_counter()
    _save_png(image, request, model.family, scheduler_name)
    save_seconds = time.perf_counter() - started

    return DoneEvent(
        type="done",
        jobId=job_id,
        outputPath=request["outputPath"],
        width=image.width,
        height=image.height,
        seed=request["seed"],
        family=model.family,
        scheduler=scheduler_name,
        device=cache.device.device,
        dtype=cache.device.dtype_name,
        options=_options_record(model, cache),
        modelLoads=cache.loads,
        stepsRun=steps_run,
        promptTokens=prompt_tokens,
        timings={
            "loadSeconds": round(load_seconds, 4),
            "inferenceSeconds": round(inference_seconds, 4),
            "saveSeconds": round(save_seconds, 4),
        },
    )


def _denoise_within_memory(request: GenerateRequest, model: LoadedModel, cache: ModelCache, cancel: threading.Event, send: SendProgress) -> tuple[Any, int, int]:
    """Runs the job; a first out-of-memory turns attention slicing on for this model (it stays on) and tries once more."""
    for attempt in (1, 2):
        try:
            return _denoise(request, model, cancel, send)
        except JobFailed:
            raise
        except Exception as exc:  # noqa: BLE001 - any library failure becomes a job error the agent can read
            if not _is_out_of_memory(exc):
                raise JobFailed("generation_failed", f"{type(exc).__name__}: {exc}") from exc
            cache.device.empty_cache()
            unsliced = [pipeline for pipeline in model.pipelines() if not pipeline.attention_slicing]
            if attempt == 2 or not unsliced:
                size = f"{request['width']}x{request['height']}"
                raise JobFailed("out_of_memory", f"{cache.device.device} ran out of memory at {size} even with attention slicing: try a smaller size") from exc
            log.warning("job %s ran out of memory; slicing attention from now on and trying again", request["jobId"])
            for pipeline in unsliced:
                pipeline.slice_attention()
            # The failed run left its state in the scheduler: start the retry on a fresh one.
            model.base.use_scheduler(request.get("scheduler"))
    raise AssertionError("unreachable")


def _options_record(model: LoadedModel, cache: ModelCache) -> dict[str, bool]:
    """The options this image was really made with: slicing may have been turned on after an out-of-memory."""
    vae = model.base.pipe.vae
    return {
        **cache.device.options.as_record(),
        "attentionSlicing": any(pipeline.attention_slicing for pipeline in model.pipelines()),
        # diffusers decodes in float32 when a float16 VAE is marked force_upcast (SDXL's overflows in float16).
        "vaeUpcast": cache.device.dtype == torch.float16 and bool(getattr(vae.config, "force_upcast", False)),
    }


def _denoise(request: GenerateRequest, model: LoadedModel, cancel: threading.Event, send: SendProgress) -> tuple[Any, int, int]:
    """Returns the image, how many denoising steps ran (base and refiner) and the prompt's token count."""
    refiner = request.get("refiner")
    progress = _Progress(request["jobId"], send, request["steps"], refiner["steps"] if refiner else 0)
    # A CPU generator gives the same latents for a seed on CUDA, MPS and CPU alike.
    generator = torch.Generator(device="cpu").manual_seed(request["seed"])
    base_prompt, prompt_tokens = _prompt_kwargs(model.base.pipe, request)
    base_kwargs: dict[str, Any] = {
        **base_prompt,
        "generator": generator,
        "width": request["width"],
        "height": request["height"],
        "num_inference_steps": request["steps"],
        "guidance_scale": request["cfgScale"],
        "callback_on_step_end": _step_callback(cancel, progress.base_step),
    }
    if refiner is not None:
        base_kwargs.update(denoising_end=refiner["switchAt"], output_type="latent")
    result = model.base.pipe(**base_kwargs)
    if cancel.is_set():
        raise JobFailed("cancelled", "cancelled while running")
    if refiner is None:
        return result.images[0], progress.steps_run, prompt_tokens

    # ModelCache.get attached the refiner: run_generate asked for it whenever the request has one.
    assert model.refiner is not None
    model.refiner.use_scheduler(request.get("scheduler"))
    refiner_prompt, _ = _prompt_kwargs(model.refiner.pipe, request)
    result = model.refiner.pipe(
        **refiner_prompt,
        generator=generator,
        image=result.images,
        num_inference_steps=_refiner_schedule_length(refiner),
        denoising_start=refiner["switchAt"],
        guidance_scale=refiner["cfgScale"],
        callback_on_step_end=_step_callback(cancel, progress.refiner_step),
    )
    if cancel.is_set():
        raise JobFailed("cancelled", "cancelled while running")
    return result.images[0], progress.steps_run, prompt_tokens


def _prompt_kwargs(pipe: Any, request: GenerateRequest) -> tuple[dict[str, Any], int]:
    """Prompt embeddings for this pipeline (long prompts chunked, emphasis applied) and the prompt's token count."""
    positive, negative = PromptEncoder(pipe).encode_pair(request["prompt"], request.get("negativePrompt"))
    kwargs: dict[str, Any] = {"prompt_embeds": positive.embeds, "negative_prompt_embeds": negative.embeds}
    if positive.pooled is not None:
        kwargs.update(pooled_prompt_embeds=positive.pooled, negative_pooled_prompt_embeds=negative.pooled)
    return kwargs, positive.tokens


def _save_png(image, request: GenerateRequest, family: str, scheduler_name: str) -> None:
    info = PngInfo()
    # AUTOMATIC1111's text first: PNG-info viewers, Civitai and the other UIs' importers read this one.
    info.add_text("parameters", _parameters_text(request, scheduler_name, image.width, image.height))
    info.add_text(
        "kitty-images",
        json.dumps(
            {
                "prompt": request["prompt"],
                "negativePrompt": request.get("negativePrompt"),
                "model": request["model"]["name"],
                "family": family,
                "seed": request["seed"],
                "steps": request["steps"],
                "cfgScale": request["cfgScale"],
                "scheduler": scheduler_name,
            }
        ),
    )
    output_path = request["outputPath"]
    os.makedirs(os.path.dirname(output_path) or ".", exist_ok=True)
    partial_path = output_path + ".partial"
    image.save(partial_path, format="PNG", pnginfo=info)
    # Rename is atomic: the server never sees half a PNG.
    os.replace(partial_path, output_path)


def _parameters_text(request: GenerateRequest, scheduler_name: str, width: int, height: int) -> str:
    extra: dict[str, Any] = {}
    refiner = request.get("refiner")
    refiner_path = request["model"].get("refinerPath")
    if refiner is not None and refiner_path:
        extra["Refiner"] = os.path.basename(os.path.normpath(refiner_path))
        extra["Refiner switch at"] = float(refiner["switchAt"])
    settings = generation_settings(
        steps=request["steps"],
        scheduler=scheduler_name,
        cfg_scale=request["cfgScale"],
        seed=request["seed"],
        width=width,
        height=height,
        model=request["model"]["name"],
        extra=extra,
    )
    return format_parameters(request["prompt"], request.get("negativePrompt"), settings)
