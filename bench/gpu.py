#!/usr/bin/env python3
"""Full-size random-weight SDXL on a CUDA GPU: bare diffusers next to the service's warm job, without and then with
torch.compile, in one run. Standard library only: it picks (or prepares) the Python that has torch and diffusers.

  python3 bench/gpu.py                 # 1024x1024, 30 steps, guidance 5, fp16; 3 timed runs after a warm-up each
  python3 bench/gpu.py --no-compile    # skip the compile part (it comes last anyway)
  python3 bench/gpu.py --cpu-check     # no GPU: the same plumbing end to end, scaled-down SDXL on the CPU

Order, each figure printed the moment it is measured:
  1. bare:     ../shared/gpu/sdxl_bare_bench.py (or the copy bench/gpu-pack.sh put in .cache/gpu-carry), which also
               writes the diffusers folder (--save-dir) that the service then loads;
  2. service:  the real server (node dist/cli.js serve over stdio MCP, bench/gpu-server.mjs) when Node 22, dist and
               node_modules are there, else the runner alone over its NDJSON wire (python -m diffusers_runner), timed
               from the request line to the done event (PNG written); the first job is the warm-up;
  3. bare --compile (mode "default", as the runner compiles), then the service with KITTY_IMAGES_COMPILE=1.
After --deadline-s the current step is stopped, what was measured is printed, and the exit status is 3.
The last stdout line is one JSON object with everything; --json FILE keeps a copy, rewritten after every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / ".cache" / "gpu-carry"
BARE_SCRIPT_PLACES = [ROOT.parent / "shared" / "gpu" / "sdxl_bare_bench.py", CARRY / "sdxl_bare_bench.py"]
PROBE = """
import json, sys
import torch, diffusers, transformers, PIL, safetensors
import diffusers_runner.pipelines, diffusers_runner.generate
cuda = torch.cuda.is_available()
print(json.dumps({"python": sys.version.split()[0], "executable": sys.executable, "torch": torch.__version__,
                  "diffusers": diffusers.__version__, "transformers": transformers.__version__,
                  "cuda": cuda, "gpu": torch.cuda.get_device_name() if cuda else None}))
"""
STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[gpu-bench {time.strftime('%H:%M:%S')} +{time.monotonic() - STARTED:.0f}s] {message}", file=sys.stderr, flush=True)


class Report:
    """Everything measured so far; printed as figures arrive and as one JSON line at the end."""

    def __init__(self, json_path: str | None) -> None:
        self.data: dict = {"figures": {}, "notes": []}
        self.json_path = json_path

    def set(self, key: str, value) -> None:
        self.data[key] = value
        self.save()

    def figure(self, name: str, value, line: str) -> None:
        self.data["figures"][name] = value
        print(line, flush=True)
        self.save()

    def note(self, text: str) -> None:
        self.data["notes"].append(text)
        log(text)
        self.save()

    def save(self) -> None:
        if self.json_path:
            Path(self.json_path).write_text(json.dumps(self.data, indent=1))


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()


# ---------------------------------------------------------------------------------------------------------- Python


def probe(python: str, env: dict) -> tuple[dict | None, str]:
    try:
        done = subprocess.run([python, "-c", PROBE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if done.returncode != 0:
        return None, (done.stderr.strip().splitlines() or ["no output"])[-1]
    return json.loads(done.stdout.strip().splitlines()[-1]), ""


def python_env(extra: dict | None = None) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "python"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    env.update(extra or {})
    return env


def wrap_python(base: str, site: Path, folder: Path) -> str:
    """A python that also sees `site`: the server sets the runner's PYTHONPATH itself, so a wrapper carries it."""
    wrapper = folder / "python"
    wrapper.write_text(f'#!/bin/sh\nexport PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{site}"\nexec "{base}" "$@"\n')
    wrapper.chmod(0o755)
    return str(wrapper)


def choose_python(args, work: Path, report: Report) -> str:
    """The first that imports torch, diffusers, transformers and the runner: --python / KITTY_IMAGES_PYTHON, the
    project's .cache/venv, python3 on PATH (a named one is the only candidate). One that lacks only some packages gets the wheels in .cache/gpu-carry
    (pip --no-index --target: no network needed). Last resort: scripts/setup-python.sh builds .cache/venv, which
    needs the network."""
    named = args.python or os.environ.get("KITTY_IMAGES_PYTHON")
    # A Python named by the caller is the only candidate (wheels may still be added to it).
    candidates = [named] if named else [str(ROOT / ".cache" / "venv" / "bin" / "python"), shutil.which("python3"), sys.executable]
    seen, failures = set(), []
    for python in candidates:
        if not python or python in seen or not Path(python).exists():
            continue
        seen.add(python)
        info, error = probe(python, python_env())
        if info:
            report.set("python", {**info, "how": f"{python} as it is"})
            return python
        failures.append((python, error))
        log(f"{python} cannot run the bench: {error}")
    wheels = sorted(CARRY.glob("*.whl"))
    for python, _ in failures:
        if not wheels:
            break
        site = work / "site"
        log(f"installing {len(wheels)} carried wheel(s) for {python} into {site}: {', '.join(w.name for w in wheels)}")
        done = subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile", "--no-cache-dir",
                               "--upgrade", "--target", str(site), *map(str, wheels)], capture_output=True, text=True)
        if done.returncode != 0:
            log(f"pip could not install the wheels with {python}: {done.stderr.strip()[-400:]}")
            continue
        wrapped = wrap_python(python, site, work)
        info, error = probe(wrapped, python_env())
        if info:
            report.set("python", {**info, "how": f"{python} plus the carried wheels ({', '.join(w.name for w in wheels)}) in {site}"})
            return wrapped
        log(f"{python} with the wheels still cannot run the bench: {error}")
    venv_python = ROOT / ".cache" / "venv" / "bin" / "python"
    if not named and not venv_python.exists() and not args.no_venv:
        log("no usable Python: building .cache/venv with scripts/setup-python.sh (needs the network)")
        done = subprocess.run(["bash", str(ROOT / "scripts" / "setup-python.sh")], env={**os.environ, "PIP_DEFAULT_TIMEOUT": "10", "PIP_RETRIES": "0"})
        if done.returncode == 0:
            info, error = probe(str(venv_python), python_env())
            if info:
                report.set("python", {**info, "how": "a new .cache/venv from python/requirements.txt"})
                return str(venv_python)
    raise SystemExit("no Python here has torch, diffusers, transformers and the runner's imports; on a machine without "
                     "the network run bench/gpu-pack.sh first where pip works and carry .cache/gpu-carry")


# ------------------------------------------------------------------------------------------------------ processes


class Child:
    """A subprocess whose stdout lines are read on a thread, so every wait can end at the deadline."""

    def __init__(self, cmd: list[str], env: dict, stdin: bool = False) -> None:
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                     stdin=subprocess.PIPE if stdin else subprocess.DEVNULL, start_new_session=True)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def next_line(self, deadline: Deadline) -> str | None:
        """The next stdout line; None at end of output; TimeoutError at the deadline."""
        try:
            return self.lines.get(timeout=max(0.0, deadline.left()))
        except queue.Empty:
            raise TimeoutError from None

    def send(self, obj: dict) -> None:
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()

    def stop(self, grace: float = 20) -> None:
        if self.proc.stdin:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


# ----------------------------------------------------------------------------------------------------------- bare


def run_bare(args, python: str, bare_script: Path, compile_: bool, save_dir: Path | None, deadline: Deadline) -> dict:
    cmd = [python, str(bare_script), "--runs", str(args.runs), "--steps", str(args.steps), "--size", str(args.size),
           "--guidance", str(args.guidance), "--deadline-s", str(max(5, int(deadline.left() - 10)))]
    if args.cpu_check:
        cmd += ["--device", "cpu", "--scale-down"]
    if compile_:
        cmd += ["--compile", "--compile-mode", args.bare_compile_mode]
    if save_dir:
        cmd += ["--save-dir", str(save_dir)]
    log("bare: " + " ".join(cmd[1:]))
    child = Child(cmd, python_env())
    last = None
    try:
        while (line := child.next_line(deadline)) is not None:
            if line.strip():
                last = line
    except TimeoutError:
        child.stop(grace=0)
        return {"error": "overall deadline reached during the bare run"}
    child.proc.wait()
    try:
        result = json.loads(last) if last else {"error": f"no JSON line (exit {child.proc.returncode})"}
    except json.JSONDecodeError:
        result = {"error": f"last line is not JSON: {last[:200]}"}
    result["exit"] = child.proc.returncode
    return result


# -------------------------------------------------------------------------------------------------------- service


def node_for_server() -> tuple[str | None, str]:
    """Node 22+ with dist/cli.js and node_modules, or why not."""
    for node in (shutil.which("node"), str(ROOT / ".cache" / "node" / "node-22" / "bin" / "node")):
        if not node or not Path(node).exists():
            continue
        try:
            version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            continue
        if int(version.lstrip("v").split(".")[0] or 0) < 22:
            continue
        if not (ROOT / "dist" / "cli.js").exists():
            return None, f"Node {version} is there but dist/ is not built (npm run build)"
        if not (ROOT / "node_modules" / "@modelcontextprotocol" / "client").exists():
            return None, f"Node {version} is there but node_modules is not (npm install)"
        return node, f"Node {version}"
    return None, "no Node 22+ on this machine (and none can be fetched without the network)"


def service_env(args, python: str, compile_: bool) -> dict:
    return python_env({"KITTY_IMAGES_DEVICE": "cpu" if args.cpu_check else "cuda", "KITTY_IMAGES_COMPILE": "1" if compile_ else "0",
                       "KITTY_IMAGES_PYTHON": python, "KITTY_IMAGES_RUNNER_LOG_LEVEL": "WARNING"})


def service_size(args) -> int:
    return max(args.size, 256)  # the server's smallest size; --cpu-check asks for less on the bare side


def run_service_server(args, node: str, python: str, model: Path, compile_: bool, deadline: Deadline, on_job) -> str | None:
    cmd = [node, str(ROOT / "bench" / "gpu-server.mjs"), "--model", str(model), "--jobs", str(args.runs), "--size", str(service_size(args)),
           "--steps", str(args.steps), "--guidance", str(args.guidance), "--device", "cpu" if args.cpu_check else "cuda"]
    if compile_:
        cmd.append("--compile")
    child = Child(cmd, service_env(args, python, compile_))
    try:
        while (line := child.next_line(deadline)) is not None:
            if line.strip().startswith("{"):
                on_job(json.loads(line))
    except TimeoutError:
        child.stop(grace=0)
        return "overall deadline reached"
    child.proc.wait()
    return None if child.proc.returncode == 0 else f"bench/gpu-server.mjs exited {child.proc.returncode}"


def run_service_runner(args, python: str, model: Path, compile_: bool, deadline: Deadline, work: Path, on_job) -> str | None:
    started = time.perf_counter()
    child = Child([python, "-m", "diffusers_runner"], service_env(args, python, compile_), stdin=True)
    try:
        ready = json.loads(child.next_line(deadline) or "{}")
        if ready.get("type") != "ready":
            return f"runner did not get ready: {ready}"
        log(f"runner ready in {time.perf_counter() - started:.1f} s (imports, device); its first job then loads the model")
        for job in range(args.runs + 1):
            job_id = f"bench-{'compile' if compile_ else 'plain'}-{job}"
            out = work / "service-out" / f"{job_id}.png"
            request = {"type": "generate", "jobId": job_id, "model": {"name": "sdxl_random", "path": str(model)},
                       "prompt": "a photo of an astronaut riding a horse on mars", "negativePrompt": None,
                       "width": service_size(args), "height": service_size(args), "steps": args.steps, "cfgScale": args.guidance,
                       "seed": job, "scheduler": None, "refiner": None, "outputPath": str(out)}
            started = time.perf_counter()
            child.send(request)
            while True:
                line = child.next_line(deadline)
                if line is None:
                    return f"runner exited (status {child.proc.poll()})"
                event = json.loads(line)
                if event.get("jobId") != job_id or event["type"] == "progress":
                    continue
                if event["type"] == "error":
                    return f"job {job}: {event.get('code')}: {event.get('message')}"
                seconds = time.perf_counter() - started
                on_job({"job": job, "seconds": round(seconds, 4), "timings": event["timings"], "modelLoads": event["modelLoads"],
                        "device": event["device"], "dtype": event["dtype"], "options": event.get("options"), "versions": ready.get("versions")})
                break
    except TimeoutError:
        child.stop(grace=0)
        return "overall deadline reached"
    finally:
        if child.proc.poll() is None:
            child.stop()
    return None


def run_service(args, via: tuple[str, str | None], python: str, model: Path, compile_: bool, deadline: Deadline, work: Path, report: Report, label: str) -> dict:
    jobs: list[dict] = []
    kind, node = via

    def on_job(job: dict) -> None:
        jobs.append(job)
        what = ("warm-up (" + ("runner start + " if kind == "server" else "") + "load" + (" + compile" if compile_ else "") + ")") if job["job"] == 0 else f"job {job['job']}/{args.runs}"
        t = job.get("timings") or {}
        log(f"{label}: {what}: {job['seconds']:.3f} s (runner: load {t.get('loadSeconds')}, pipe {t.get('inferenceSeconds')}, save {t.get('saveSeconds')}; options {job.get('options')})")

    if kind == "server":
        error = run_service_server(args, node, python, model, compile_, deadline, on_job)
    else:
        error = run_service_runner(args, python, model, compile_, deadline, work, on_job)
    warm = [job for job in jobs if job["job"] > 0]
    result = {"via": kind, "first_s": jobs[0]["seconds"] if jobs else None, "times_s": [job["seconds"] for job in warm],
              "median_s": median([job["seconds"] for job in warm]),
              "runner_pipe_median_s": median([job["timings"]["inferenceSeconds"] for job in warm]),
              "runner_save_median_s": median([job["timings"]["saveSeconds"] for job in warm]),
              "model_loads": jobs[-1]["modelLoads"] if jobs else None, "options": jobs[-1].get("options") if jobs else None,
              "versions": jobs[-1].get("versions") if jobs else None, "device": jobs[-1].get("device") if jobs else None}
    if error:
        result["error"] = error
    return result


# ----------------------------------------------------------------------------------------------------------- main


def phase(args, name: str, compile_: bool, ctx: dict, report: Report, deadline: Deadline) -> None:
    tag = "compile" if compile_ else "plain"
    if deadline.left() < 15:
        report.note(f"{name}: skipped, the overall deadline is reached")
        report.set("deadline_reached", True)
        return
    save_dir = ctx["model"] if not compile_ and not ctx["model_ready"] else None
    bare = run_bare(args, ctx["python"], ctx["bare_script"], compile_, save_dir, deadline)
    if save_dir and bare.get("save_dir") and not bare.get("error"):
        (ctx["model"] / "kitty-bench-complete").write_text(json.dumps({"scale_down": bool(args.cpu_check)}))
        ctx["model_ready"] = True
    report.figure(f"bare_{tag}", bare, f"{name}, bare diffusers: median {bare.get('median_s')} s/image over {len(bare.get('times_s') or [])} runs"
                  + (f", {bare.get('it_s')} it/s, warm-up {bare.get('warmup_s')} s" if bare.get("median_s") else "")
                  + (f"  [{bare['error']}]" if bare.get("error") else ""))
    if not ctx["model_ready"]:
        report.note(f"{name}: no saved model folder, so no service figure")
        return
    if deadline.left() < 15:
        report.note(f"{name}, service: skipped, the overall deadline is reached")
        report.set("deadline_reached", True)
        return
    label = f"{name}, service via {ctx['via'][0]}"
    service = run_service(args, ctx["via"], ctx["python"], ctx["model"], compile_, deadline, ctx["work"], report, label)
    ratio = round(service["median_s"] / bare["median_s"], 3) if service.get("median_s") and bare.get("median_s") else None
    service["ratio_to_bare"] = ratio
    report.figure(f"service_{tag}", service,
                  f"{label}: warm job median {service.get('median_s')} s over {len(service['times_s'])} jobs (first job {service.get('first_s')} s); "
                  f"runner pipe() {service.get('runner_pipe_median_s')} s, PNG save {service.get('runner_save_median_s')} s; "
                  f"model loads {service.get('model_loads')}; options {service.get('options')}"
                  + (f"  [{service['error']}]" if service.get("error") else ""))
    if compile_ and service.get("options") and not service["options"].get("compile"):
        report.note(f"{name}: the runner did not compile (KITTY_IMAGES_COMPILE=1 compiles on CUDA only), so this service figure is uncompiled")
    print(f"{name}: warm service job / bare pipe() = {ratio}x" if ratio else f"{name}: no ratio (a side is missing)", flush=True)


def summary(report: Report) -> None:
    figures = report.data["figures"]
    print("summary (seconds per image, medians):", flush=True)
    for tag in ("plain", "compile"):
        bare, service = figures.get(f"bare_{tag}"), figures.get(f"service_{tag}")
        if bare is None and service is None:
            print(f"  {tag:8s} not measured", flush=True)
            continue
        print(f"  {tag:8s} bare {bare and bare.get('median_s')}  service ({service and service.get('via')}) {service and service.get('median_s')}  "
              f"ratio {service and service.get('ratio_to_bare')}  first job {service and service.get('first_s')}", flush=True)
    print(json.dumps(report.data), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed runs / warm jobs after one warm-up each (default 3)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile part")
    parser.add_argument("--bare-compile-mode", default="default", help="the bare side's torch.compile mode (the runner uses the default mode)")
    parser.add_argument("--deadline-s", type=float, default=450, help="stop, print what was measured and exit 3 after this (default 450)")
    parser.add_argument("--via", choices=["auto", "server", "runner"], default="auto", help="service path: the real server needs Node 22")
    parser.add_argument("--python", help="the Python for the bare bench and the runner (default: detected)")
    parser.add_argument("--no-venv", action="store_true", help="never try to build .cache/venv (it needs the network)")
    parser.add_argument("--work", default="/tmp/kitty-bench-gpu", help="model folder and scratch (the fp16 folder is about 7 GB)")
    parser.add_argument("--json", help="also write the results here, after every figure")
    parser.add_argument("--cpu-check", action="store_true", help="no GPU: scaled-down SDXL on the CPU, 256x256, 2 steps, 2 runs")
    args = parser.parse_args()
    if args.cpu_check:
        args.size, args.steps, args.runs = 256, 2, min(args.runs, 2)

    deadline = Deadline(args.deadline_s)
    report = Report(args.json)
    report.set("settings", {"size": args.size, "steps": args.steps, "guidance": args.guidance, "runs": args.runs, "cpu_check": args.cpu_check,
                            "compile": not args.no_compile, "bare_compile_mode": args.bare_compile_mode, "deadline_s": args.deadline_s})
    work = Path(args.work) / ("cpu-check" if args.cpu_check else "cuda")
    work.mkdir(parents=True, exist_ok=True)
    try:
        python = choose_python(args, work, report)
        info = report.data["python"]
        log(f"Python: {info['how']}: torch {info['torch']}, diffusers {info['diffusers']}, transformers {info['transformers']}, GPU {info['gpu']}")
        if not args.cpu_check and not info["cuda"]:
            raise SystemExit(f"torch {info['torch']} sees no CUDA GPU here; without one run --cpu-check")
        bare_script = next((p for p in BARE_SCRIPT_PLACES if p.exists()), None)
        if bare_script is None:
            raise SystemExit(f"sdxl_bare_bench.py is in none of {', '.join(map(str, BARE_SCRIPT_PLACES))}: run bench/gpu-pack.sh")
        node, why = node_for_server()
        if args.via == "server" and not node:
            raise SystemExit(f"--via server: {why}")
        via = ("server", node) if node and args.via != "runner" else ("runner", None)
        report.set("service_path", f"{via[0]}: " + (f"the real server (bench/gpu-server.mjs, {why})" if via[0] == "server"
                                                     else f"python -m diffusers_runner over NDJSON, no Node server ({why if not node else '--via runner'})"))
        log(f"bare bench: {bare_script}; service: {report.data['service_path']}")
        model = work / "sdxl-random"
        marker = model / "kitty-bench-complete"
        model_ready = marker.exists() and json.loads(marker.read_text()).get("scale_down") == bool(args.cpu_check)
        if model_ready:
            report.note(f"reusing the model folder {model} from an earlier run")
        elif model.exists():
            shutil.rmtree(model)
        ctx = {"python": python, "bare_script": bare_script, "via": via, "model": model, "model_ready": model_ready, "work": work}
        phase(args, "no compile", False, ctx, report, deadline)
        if not args.no_compile:
            phase(args, "torch.compile", True, ctx, report, deadline)
    except SystemExit as exc:
        report.set("error", str(exc))
        log(f"ERROR: {exc}")
        summary(report)
        return 1
    summary(report)
    if report.data.get("deadline_reached") or deadline.left() <= 0 or any("deadline" in str(f.get("error", "")) for f in report.data["figures"].values()):
        return 3
    failed = [name for name, f in report.data["figures"].items() if f.get("error")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
