"""LoRA adapters on a warm pipeline, through diffusers' PEFT loaders.

An adapter is loaded once and kept; each job activates exactly the ones it names, at its weights. A job naming
none disables them all, which makes every LoRA-wrapped layer compute its base layer alone: the pixels are those of
a pipeline that never had a LoRA.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time

from .pipelines import LoadedModel
from .protocol import JobFailed, LoraSpec

log = logging.getLogger("diffusers_runner.loras")

# Adapters kept loaded per pipeline; past this, ones the job does not use are deleted, oldest first.
KEEP_LOADED = 8


def adapter_name(path: str) -> str:
    """A PEFT adapter name for a file: a module-name-safe stem plus a short hash, so two folders' `detail.safetensors` differ."""
    real = os.path.realpath(path)
    stem = re.sub(r"\W", "_", os.path.splitext(os.path.basename(real))[0])
    return f"{stem}_{hashlib.sha1(real.encode()).hexdigest()[:8]}"


def apply_loras(model: LoadedModel, loras: list[LoraSpec]) -> float:
    """Makes exactly these LoRAs active on the base pipeline; returns the seconds spent loading new ones."""
    base = model.base
    pipe = base.pipe
    if not loras and not base.loras:
        return 0.0
    started = time.perf_counter()
    loaded_any = False
    wanted: dict[str, float] = {}
    for lora in loras:
        name = adapter_name(lora["path"])
        if name not in base.loras:
            _load(pipe, lora, name, model.family)
            base.loras[name] = lora["path"]
            loaded_any = True
        wanted[name] = float(lora["weight"])
    if wanted:
        pipe.enable_lora()
        pipe.set_adapters(list(wanted), adapter_weights=list(wanted.values()))
    else:
        pipe.disable_lora()
    _forget_unused(base, wanted)
    return time.perf_counter() - started if loaded_any else 0.0


def _load(pipe, lora: LoraSpec, name: str, family: str) -> None:
    if not os.path.isfile(lora["path"]):
        raise JobFailed("model_not_found", f"LoRA {lora['name']}: file {lora['path']} does not exist")
    try:
        pipe.load_lora_weights(lora["path"], adapter_name=name)
    except Exception as exc:  # noqa: BLE001 - PEFT raises ValueError, RuntimeError or KeyError for a file that does not fit
        _delete(pipe, name)
        raise JobFailed(
            "bad_request",
            f"LoRA {lora['name']} does not fit this {family} model (is it for another family?): {type(exc).__name__}: {str(exc)[:300]}",
        ) from exc
    log.info("loaded LoRA %s from %s", name, lora["path"])


def _forget_unused(base, wanted: dict[str, float]) -> None:
    unused = [name for name in base.loras if name not in wanted]
    while len(base.loras) > KEEP_LOADED and unused:
        name = unused.pop(0)
        _delete(base.pipe, name)
        del base.loras[name]


def _delete(pipe, name: str) -> None:
    try:
        pipe.delete_adapters([name])
    except Exception:  # noqa: BLE001 - nothing of it may have been loaded
        pass
