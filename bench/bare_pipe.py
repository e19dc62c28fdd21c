"""Bare diffusers timings for bench/warm-runner.mjs: the floor the server is measured against.

Prints one JSON line: the median of `pipe()` on a pipeline loaded once, and the median of load + `pipe()`,
which is what the original images-service paid on every job.
"""

import json
import statistics
import sys
import time

import torch
from diffusers import DiffusionPipeline, StableDiffusionPipeline

from diffusers_runner.families import FAMILIES, PIPELINE_FAMILIES


def load(path: str) -> DiffusionPipeline:
    pipe = DiffusionPipeline.from_pretrained(path, dtype=torch.float32, local_files_only=True, **({"safety_checker": None, "requires_safety_checker": False} if _is_sd15(path) else {}))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _is_sd15(path: str) -> bool:
    return json.loads(open(f"{path}/model_index.json").read())["_class_name"] == StableDiffusionPipeline.__name__


def run(pipe, seed: int, size: int, steps: int):
    # The family's own default guidance, as the server's job gets it: the same work on both sides.
    family = FAMILIES[PIPELINE_FAMILIES[type(pipe).__name__]]
    guidance = {"true_cfg_scale" if family.guidance == "true_cfg" else "guidance_scale": family.defaults["cfgScale"]}
    return pipe("a red cube", width=size, height=size, num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(seed), **guidance).images[0]


def main(path: str, jobs: int, size: int, steps: int) -> None:
    pipe = load(path)
    run(pipe, 0, size, steps)  # warm-up, as the server's first job is
    warm = []
    for seed in range(jobs):
        started = time.perf_counter()
        run(pipe, seed, size, steps)
        warm.append(time.perf_counter() - started)
    reload_each = []
    for seed in range(min(jobs, 5)):
        started = time.perf_counter()
        run(load(path), seed, size, steps)
        reload_each.append(time.perf_counter() - started)
    print(json.dumps({"barePipeSeconds": statistics.median(warm), "loadPlusPipeSeconds": statistics.median(reload_each)}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
