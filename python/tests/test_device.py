"""The device policy (pure, every device) and the out-of-memory fallback to attention slicing (real tiny pipeline)."""

import threading

import pytest
import torch

from diffusers_runner import generate
from diffusers_runner.device import SLICING_BELOW_BYTES, DeviceChoice, RuntimeOptions, choose_device, runtime_options
from diffusers_runner.pipelines import ModelCache

GB = 1024**3


def test_mps_slices_attention_only_below_64_gb_unless_told():
    assert runtime_options("mps", 192 * GB, {}).attention_slicing is False, "a Mac Studio runs unsliced"
    assert runtime_options("mps", 64 * GB, {}).attention_slicing is False
    assert runtime_options("mps", 32 * GB, {}).attention_slicing is True
    assert runtime_options("mps", None, {}).attention_slicing is True, "unknown memory: the safe choice"
    assert runtime_options("mps", 192 * GB, {"KITTY_IMAGES_ATTENTION_SLICING": "on"}).attention_slicing is True
    assert runtime_options("mps", 16 * GB, {"KITTY_IMAGES_ATTENTION_SLICING": "off"}).attention_slicing is False
    assert SLICING_BELOW_BYTES == 64 * GB


def test_cuda_gets_channels_last_and_compiles_only_when_asked():
    assert runtime_options("cuda", 128 * GB, {}) == RuntimeOptions(attention_slicing=False, channels_last=True, compile=False)
    assert runtime_options("cuda", 128 * GB, {"KITTY_IMAGES_COMPILE": "1"}).compile is True
    assert runtime_options("cpu", 8 * GB, {"KITTY_IMAGES_COMPILE": "1"}) == RuntimeOptions(False, False, False), "CPU runs plain"


def test_bad_settings_say_what_is_allowed():
    with pytest.raises(ValueError, match="KITTY_IMAGES_ATTENTION_SLICING must be one of auto, on, off"):
        runtime_options("mps", None, {"KITTY_IMAGES_ATTENTION_SLICING": "sometimes"})
    with pytest.raises(ValueError, match="KITTY_IMAGES_COMPILE must be one of 0, 1"):
        runtime_options("cuda", None, {"KITTY_IMAGES_COMPILE": "yes"})


def test_choose_device_on_this_machine_is_cpu_float32_without_options():
    choice = choose_device("cpu", {})
    assert (choice.device, choice.dtype_name, choice.options) == ("cpu", "float32", RuntimeOptions(False, False, False))


def test_a_job_that_runs_out_of_memory_slices_attention_and_runs_again(tiny_models, tmp_path, monkeypatch):
    cache = ModelCache(DeviceChoice("cpu", torch.float32))
    real_denoise = generate._denoise
    calls = []

    def out_of_memory_once(job, seed):
        calls.append(job.model.base.attention_slicing)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_denoise(job, seed)

    monkeypatch.setattr(generate, "_denoise", out_of_memory_once)
    request = {
        "type": "generate", "jobId": "oom", "model": {"name": "tiny", "path": tiny_models["sd15"]}, "prompt": "a cube",
        "negativePrompt": None, "width": 256, "height": 256, "steps": 2, "cfgScale": 7.0, "seed": 1, "scheduler": None,
        "refiner": None, "outputPath": str(tmp_path / "oom.png"),
    }
    done = generate.run_generate(request, cache, threading.Event(), lambda event: None)
    assert calls == [False, True]
    assert done["options"]["attentionSlicing"] is True and (tmp_path / "oom.png").exists()

    monkeypatch.setattr(generate, "_denoise", lambda *args: (_ for _ in ()).throw(torch.OutOfMemoryError("out of memory")))
    with pytest.raises(generate.JobFailed, match="even with attention slicing") as failure:
        generate.run_generate({**request, "jobId": "oom2"}, cache, threading.Event(), lambda event: None)
    assert failure.value.code == "out_of_memory"
