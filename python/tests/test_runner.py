"""The runner as the server runs it: a subprocess speaking NDJSON, loading the tiny pipelines through from_pretrained."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from diffusers_runner.pipelines import ModelLoadError, detect_family

PYTHON_DIR = Path(__file__).resolve().parents[1]


def test_family_comes_from_model_index_json(tiny_models):
    assert detect_family(tiny_models["sd15"]) == "sd15"
    assert detect_family(tiny_models["sdxl"]) == "sdxl"
    assert detect_family(tiny_models["sdxl_refiner"]) == "sdxl_refiner"


def test_a_folder_without_model_index_is_refused_with_a_hint(tmp_path):
    with pytest.raises(ModelLoadError, match="no model_index.json"):
        detect_family(tmp_path)
    with pytest.raises(ModelLoadError, match="does not exist"):
        detect_family(tmp_path / "missing")


class Runner:
    def __init__(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "KITTY_IMAGES_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "diffusers_runner"],
            cwd=PYTHON_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.stdout_lines: list[str] = []

    def send(self, message: dict) -> None:
        self.process.stdin.write(json.dumps(message) + "\n")
        self.process.stdin.flush()

    def next_event(self) -> dict:
        line = self.process.stdout.readline()
        assert line, "runner closed stdout"
        self.stdout_lines.append(line)
        return json.loads(line)

    def until(self, job_id: str, kinds=("done", "error")) -> tuple[dict, list[dict]]:
        progress = []
        while True:
            event = self.next_event()
            if event.get("jobId") == job_id and event["type"] in kinds:
                return event, progress
            if event["type"] == "progress":
                progress.append(event)

    def close(self) -> int:
        self.process.stdin.close()
        return self.process.wait(timeout=60)


def generate(job_id: str, model_path: str, output: Path, **overrides) -> dict:
    request = {
        "type": "generate",
        "jobId": job_id,
        "model": {"name": "tiny", "path": model_path},
        "prompt": "a red cube",
        "negativePrompt": None,
        "width": 256,
        "height": 256,
        "steps": 3,
        "cfgScale": 7.0,
        "seed": 7,
        "scheduler": "euler_a",
        "refiner": None,
        "outputPath": str(output / f"{job_id}.png"),
    }
    request.update(overrides)
    return request


@pytest.fixture
def runner():
    process = Runner()
    yield process
    if process.process.poll() is None:
        process.process.kill()


def test_the_runner_keeps_the_model_warm_reports_steps_and_writes_only_protocol_to_stdout(runner, tiny_models, tmp_path):
    ready = runner.next_event()
    assert ready["type"] == "ready" and ready["device"] == "cpu" and ready["dtype"] == "float32"

    runner.send(generate("one", tiny_models["sd15"], tmp_path))
    done, progress = runner.until("one")
    assert done["type"] == "done", done
    assert [event["step"] for event in progress] == [1, 2, 3]
    assert done["stepsRun"] == 3 and done["scheduler"] == "euler_a"
    assert done["modelLoads"] == 1 and done["timings"]["loadSeconds"] > 0
    assert done["dtype"] == "float32"
    assert done["options"] == {"attentionSlicing": False, "channelsLast": False, "compile": False, "vaeUpcast": False, "vaeTiling": False, "firstBlockCache": False, "taylorSeerCache": False}

    runner.send(generate("two", tiny_models["sd15"], tmp_path))
    done, _ = runner.until("two")
    assert done["modelLoads"] == 1 and done["timings"]["loadSeconds"] == 0

    from PIL import Image

    first, second = Image.open(tmp_path / "one.png"), Image.open(tmp_path / "two.png")
    assert first.size == (256, 256)
    assert first.tobytes() == second.tobytes(), "same seed, same pixels"
    assert runner.close() == 0
    runner.stdout_lines.extend(runner.process.stdout.readlines())
    for line in runner.stdout_lines:
        assert json.loads(line)["type"] in ("ready", "progress", "done", "error"), line


def test_a_bad_model_fails_the_job_and_the_runner_carries_on(runner, tiny_models, tmp_path):
    runner.next_event()
    runner.send(generate("warm", tiny_models["sd15"], tmp_path))
    assert runner.until("warm")[0]["type"] == "done"
    runner.send(generate("bad", str(tmp_path / "nope"), tmp_path))
    error, _ = runner.until("bad")
    assert error == {"type": "error", "jobId": "bad", "code": "model_not_found", "message": f"model folder {tmp_path / 'nope'} does not exist"}
    runner.send(generate("refiner-as-base", tiny_models["sdxl_refiner"], tmp_path))
    error, _ = runner.until("refiner-as-base")
    assert error["code"] == "model_load_failed" and "refiner" in error["message"]
    runner.send(generate("good", tiny_models["sd15"], tmp_path, scheduler="dpmpp_2m_karras"))
    done, _ = runner.until("good")
    assert done["type"] == "done" and done["scheduler"] == "dpmpp_2m_karras"
    assert done["modelLoads"] == 1, "a request for a missing model must not evict the warm one"
    runner.send(generate("own-scheduler", tiny_models["sd15"], tmp_path, scheduler=None))
    done, _ = runner.until("own-scheduler")
    assert done["scheduler"] == "PNDMScheduler", "no scheduler named means the one the model folder configures"
    runner.send({"type": "generate", "jobId": "incomplete", "prompt": "x"})
    error, _ = runner.until("incomplete")
    assert error["code"] == "bad_request" and "lacks model" in error["message"]


def test_cancel_stops_a_running_job_at_the_next_step(runner, tiny_models, tmp_path):
    runner.next_event()
    runner.send(generate("long", tiny_models["sd15"], tmp_path, steps=150, width=512, height=512))
    event = runner.next_event()
    assert event["type"] == "progress"
    runner.send({"type": "cancel", "jobId": "long"})
    error, progress = runner.until("long")
    assert error["code"] == "cancelled"
    assert len(progress) < 149
    assert not (tmp_path / "long.png").exists()


def test_closing_stdin_mid_job_makes_the_runner_exit_promptly(runner, tiny_models, tmp_path):
    runner.next_event()
    runner.send(generate("orphan", tiny_models["sd15"], tmp_path, steps=150, width=512, height=512))
    assert runner.next_event()["type"] == "progress"
    exited = threading.Event()
    threading.Thread(target=lambda: (runner.process.wait(), exited.set()), daemon=True).start()
    runner.process.stdin.close()
    assert exited.wait(timeout=30), "runner kept running after its server went away"
    assert not (tmp_path / "orphan.png").exists()


def test_a_runner_whose_server_is_killed_while_it_imports_torch_exits_before_it_is_ready(tmp_path):
    """kill -9 of the server while its runner imports: no one reads stdin yet, so its hang-up alone must end the runner."""
    events = tmp_path / "events.ndjson"
    # A stand-in server: starts the runner as the server does, says its pid, and is killed at once.
    server = (
        "import os, subprocess, sys, time\n"
        "runner = subprocess.Popen([sys.executable, '-m', 'diffusers_runner'], stdin=subprocess.PIPE,"
        " stdout=open(sys.argv[1], 'w'), stderr=subprocess.DEVNULL)\n"
        "print(runner.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "KITTY_IMAGES_DEVICE": "cpu", "HF_HUB_OFFLINE": "1"}
    parent = subprocess.Popen([sys.executable, "-c", server, str(events)], cwd=PYTHON_DIR, env=env, stdout=subprocess.PIPE, text=True)
    runner_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    parent.stdout.close()

    def gone() -> bool:
        try:
            os.kill(runner_pid, 0)
        except ProcessLookupError:
            return True
        # Reparented to an init that has not reaped it yet: a zombie has exited all the same.
        stat = Path(f"/proc/{runner_pid}/stat")
        return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"

    deadline = time.monotonic() + 30
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(), "the runner outlived its server"
    assert "ready" not in events.read_text(), "the runner finished importing first: only stdin closing ended it"


def test_claimed_stdout_carries_only_protocol_whatever_else_prints():
    """Libraries print (tqdm, warnings, a stray print): after claim_stdout all of it lands on stderr."""
    script = (
        "import os, sys\n"
        "from diffusers_runner.protocol import claim_stdout\n"
        "events = claim_stdout()\n"
        "print('a stray print')\n"
        "sys.stdout.write('a library write\\n')\n"
        "os.write(1, b'a write to fd 1\\n')\n"
        "events.send({'type': 'ready'})\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=PYTHON_DIR, capture_output=True, text=True, check=True)
    assert result.stdout == '{"type":"ready"}\n'
    assert "a stray print" in result.stderr and "a library write" in result.stderr and "a write to fd 1" in result.stderr


def test_a_refined_job_counts_base_and_refiner_steps_as_one_rising_sequence(runner, tiny_models, tmp_path):
    runner.next_event()
    model = {"name": "tiny_sdxl", "path": tiny_models["sdxl"], "refinerPath": tiny_models["sdxl_refiner"]}
    refiner = {"steps": 2, "cfgScale": 5.0, "switchAt": 0.6}
    runner.send(generate("refined", tiny_models["sdxl"], tmp_path, model=model, steps=5, scheduler="euler", refiner=refiner))
    done, progress = runner.until("refined")
    assert done["type"] == "done", done
    assert done["family"] == "sdxl" and done["modelLoads"] == 2, "the base and its refiner"
    steps = [event["step"] for event in progress]
    assert steps == list(range(1, len(steps) + 1)) and done["stepsRun"] == steps[-1]
    assert progress[-1]["totalSteps"] == done["stepsRun"] == 3 + 2
    assert (tmp_path / "refined.png").exists()


def test_words_past_token_77_change_the_pixels_and_the_png_carries_a1111_parameters(runner, tiny_models, tmp_path):
    from PIL import Image

    from diffusers_runner.infotext import parse_parameters

    runner.next_event()
    # The tiny tokenizer spends one token per character: the last words sit past CLIP's 77-token window.
    opening = "a red cube on a table, " * 5
    runner.send(generate("snow", tiny_models["sdxl"], tmp_path, prompt=opening + "in the snow", negativePrompt="blurry", scheduler="euler"))
    runner.send(generate("rain", tiny_models["sdxl"], tmp_path, prompt=opening + "in the rain", negativePrompt="blurry", scheduler="euler"))
    snow, _ = runner.until("snow")
    rain, _ = runner.until("rain")
    assert snow["type"] == rain["type"] == "done", (snow, rain)
    assert snow["promptTokens"] == len(opening + "in the snow") - opening.count(" ") - 2 > 77
    snow_png, rain_png = Image.open(tmp_path / "snow.png"), Image.open(tmp_path / "rain.png")
    assert snow_png.tobytes() != rain_png.tobytes(), "a word after token 77 must reach the image"

    prompt, negative, settings = parse_parameters(snow_png.text["parameters"])
    assert (prompt, negative) == (opening + "in the snow", "blurry")
    assert settings == {"Steps": "3", "Sampler": "Euler", "CFG scale": "7", "Seed": "7", "Size": "256x256", "Model": "tiny"}
