"""AUTOMATIC1111's `parameters` PNG text: what A1111's PNG Info, Civitai, InvokeAI's and ComfyUI's importers read.

The format is three parts: the prompt (any number of lines), an optional line starting "Negative prompt: ",
and one last line of `Key: value` pairs joined by ", ". A value holding a comma, colon or newline is written as
a JSON string, which is how A1111 quotes it.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Our scheduler names, and diffusers' scheduler classes (a model's own), as A1111 names the samplers.
SAMPLER_NAMES: dict[str, str] = {
    "euler": "Euler",
    "euler_a": "Euler a",
    "dpmpp_2m": "DPM++ 2M",
    "dpmpp_2m_karras": "DPM++ 2M Karras",
    "ddim": "DDIM",
    "pndm": "PLMS",
    "heun": "Heun",
    "unipc": "UniPC",
    "euler_trailing": "Euler",
    "euler_a_trailing": "Euler a",
    "ddim_trailing": "DDIM",
    "lcm": "LCM",
    "tcd": "TCD",
    "flow_euler": "Euler",
    "FlowMatchEulerDiscreteScheduler": "Euler",
    "LCMScheduler": "LCM",
    "TCDScheduler": "TCD",
    "EulerDiscreteScheduler": "Euler",
    "EulerAncestralDiscreteScheduler": "Euler a",
    "DPMSolverMultistepScheduler": "DPM++ 2M",
    "DDIMScheduler": "DDIM",
    "PNDMScheduler": "PLMS",
    "HeunDiscreteScheduler": "Heun",
    "UniPCMultistepScheduler": "UniPC",
    "LMSDiscreteScheduler": "LMS",
}

# A1111 1.9+ and Forge name the noise schedule apart ("Schedule type"): trailing spacing is their SGM Uniform, and
# flow-matching models (FLUX and after) run Euler on the Simple schedule there.
SCHEDULE_TYPES: dict[str, str] = {
    "euler_trailing": "SGM Uniform",
    "euler_a_trailing": "SGM Uniform",
    "ddim_trailing": "SGM Uniform",
    "lcm": "SGM Uniform",
    "flow_euler": "Simple",
    "FlowMatchEulerDiscreteScheduler": "Simple",
}

_NEGATIVE = "Negative prompt: "
# One `Key: value` pair of the last line; a value is a JSON string or runs to the next comma.
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def sampler_name(scheduler: str) -> str:
    return SAMPLER_NAMES.get(scheduler, scheduler)


def _quote(value: Any) -> str:
    text = str(value)
    if any(mark in text for mark in ",:\n"):
        return json.dumps(text, ensure_ascii=False)
    return text


def _number(value: float) -> str:
    return f"{value:g}"


def format_parameters(prompt: str, negative_prompt: str | None, settings: dict[str, Any]) -> str:
    """The text for the PNG's `parameters` chunk. `settings` keeps its order; None values are left out."""
    lines = [prompt]
    if negative_prompt:
        lines.append(_NEGATIVE + negative_prompt)
    lines.append(", ".join(f"{key}: {_quote(_number(value) if isinstance(value, float) else value)}" for key, value in settings.items() if value is not None))
    return "\n".join(lines)


def generation_settings(
    *,
    steps: int,
    scheduler: str,
    cfg_scale: float,
    seed: int,
    width: int,
    height: int,
    model: str,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The pairs A1111 writes first, in its order, then anything more (refiner, strength, LoRAs...)."""
    return {
        "Steps": steps,
        "Sampler": sampler_name(scheduler),
        "Schedule type": SCHEDULE_TYPES.get(scheduler),
        "CFG scale": float(cfg_scale),
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model": model,
        **(extra or {}),
    }


def parse_parameters(text: str) -> tuple[str, str, dict[str, str]]:
    """Reads a `parameters` text back: (prompt, negative prompt, settings as strings)."""
    *lines, last = text.strip().split("\n")
    if len(_PAIR.findall(last)) < 3:
        # Not a settings line (an image with only a prompt): keep it as prompt text.
        lines.append(last)
        last = ""
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    for line in lines:
        if line.startswith(_NEGATIVE) or negative_lines:
            negative_lines.append(line.removeprefix(_NEGATIVE) if not negative_lines else line)
        else:
            prompt_lines.append(line)
    settings: dict[str, str] = {}
    for key, value in _PAIR.findall(last):
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = json.loads(value)
        settings[key.strip()] = value
    return "\n".join(prompt_lines), "\n".join(negative_lines), settings
