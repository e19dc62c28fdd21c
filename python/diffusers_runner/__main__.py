"""Entry point: `python -m diffusers_runner`. Reads requests on stdin, answers events on stdout, logs on stderr."""

from __future__ import annotations

import json
import logging
import os
import platform
import queue
import sys
import threading

from .protocol import ProtocolError, claim_stdout, parse_request


def main() -> int:
    events = claim_stdout()
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("KITTY_IMAGES_RUNNER_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log = logging.getLogger("diffusers_runner")

    # Heavy imports after stdout is claimed, so nothing they print can corrupt the protocol.
    import diffusers
    import torch
    import transformers

    from .device import choose_device
    from .generate import JobFailed, run_generate
    from .pipelines import ModelCache

    device = choose_device()
    cache = ModelCache(device, capacity=int(os.environ.get("KITTY_IMAGES_WARM_MODELS", "1")))
    events.send(
        {
            "type": "ready",
            "device": device.device,
            "dtype": device.dtype_name,
            "versions": {
                "python": platform.python_version(),
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "transformers": transformers.__version__,
            },
            "pid": os.getpid(),
        }
    )

    work: queue.Queue[dict | None] = queue.Queue()
    cancels: dict[str, threading.Event] = {}
    cancels_lock = threading.Lock()
    stopping = threading.Event()
    pending: set[str] = set()  # generate requests received and not yet answered

    def cancel_event(job_id: str) -> threading.Event:
        with cancels_lock:
            event = cancels.setdefault(job_id, threading.Event())
            if stopping.is_set():
                event.set()
            return event

    def read_requests() -> None:
        # A separate reader lets a cancel arrive while the main thread is denoising.
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                request = parse_request(line)
            except ProtocolError as exc:
                # A generate we cannot run still gets an answer under its id, so the server's job ends.
                job_id = _job_id_of(line)
                events.send({"type": "error", "jobId": job_id, "code": "bad_request", "message": str(exc)})
                continue
            if request["type"] == "cancel":
                # Only for a job this runner has and has not finished: a late cancel must not poison a rerun.
                with cancels_lock:
                    known = request["jobId"] in pending
                if known:
                    cancel_event(request["jobId"]).set()
            elif request["type"] == "shutdown":
                break
            else:
                with cancels_lock:
                    pending.add(request["jobId"])
                work.put(request)
        # stdin closed (the server is gone) or shutdown: abandon the current job at its next step and exit.
        # The server keeps the job queued and runs it again, so finishing it here would only waste the GPU.
        with cancels_lock:
            stopping.set()
            for event in cancels.values():
                event.set()
        work.put(None)

    threading.Thread(target=read_requests, name="stdin-reader", daemon=True).start()

    while (request := work.get()) is not None:
        if stopping.is_set():
            break
        job_id = request["jobId"]
        cancel = cancel_event(job_id)
        try:
            events.send(run_generate(request, cache, cancel, events.send))
        except JobFailed as exc:
            events.send({"type": "error", "jobId": job_id, "code": exc.code, "message": str(exc)})
        except Exception as exc:  # noqa: BLE001 - keep the process alive for the next job
            log.exception("job %s failed", job_id)
            events.send({"type": "error", "jobId": job_id, "code": "generation_failed", "message": f"{type(exc).__name__}: {exc}"})
        finally:
            with cancels_lock:
                cancels.pop(job_id, None)
                pending.discard(job_id)
    return 0


def _job_id_of(line: str) -> str | None:
    try:
        job_id = json.loads(line).get("jobId")
    except (ValueError, AttributeError):
        return None
    return job_id if isinstance(job_id, str) else None


if __name__ == "__main__":
    sys.exit(main())
