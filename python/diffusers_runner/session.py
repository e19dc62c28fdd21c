"""One runner session: a reader thread takes requests off stdin while the main thread runs generate jobs in turn."""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Iterable

from .protocol import DoneEvent, ErrorCode, ErrorEvent, GenerateRequest, JobFailed, ProtocolError, RunnerEvent, parse_request

log = logging.getLogger("diffusers_runner")

# What the session is handed to run a job, so it never sees a pipeline (and its tests need no torch).
RunJob = Callable[[GenerateRequest, threading.Event], DoneEvent]


class RunnerSession:
    """What the reader thread and the job loop share: the work queue, one cancel event per job, the stopping flag."""

    def __init__(self, send: Callable[[RunnerEvent], None], run_job: RunJob) -> None:
        self._send = send
        self._run_job = run_job
        self._work: queue.Queue[GenerateRequest | None] = queue.Queue()  # None: stop serving
        self._lock = threading.Lock()  # guards the cancel events, the pending set and setting stopping
        self._cancels: dict[str, threading.Event] = {}
        self._pending: set[str] = set()  # generate requests received and not yet answered
        self._stopping = threading.Event()

    def run(self, lines: Iterable[str]) -> None:
        # A separate reader lets a cancel arrive while the main thread is denoising.
        threading.Thread(target=self.read_requests, args=(lines,), name="stdin-reader", daemon=True).start()
        self.serve()

    def read_requests(self, lines: Iterable[str]) -> None:
        for line in lines:
            if line.strip() and not self.handle_line(line):
                break
        self.stop()

    def handle_line(self, line: str) -> bool:
        """Acts on one request line; False once it is a shutdown."""
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            self._send_error(exc.job_id, "bad_request", str(exc))
            return True
        if request["type"] == "shutdown":
            return False
        if request["type"] == "cancel":
            self.cancel(request["jobId"])
        else:
            with self._lock:
                self._pending.add(request["jobId"])
            self._work.put(request)
        return True

    def cancel(self, job_id: str) -> None:
        # Only for a job this runner has and has not finished: a late cancel must not poison a rerun.
        with self._lock:
            if job_id in self._pending:
                self._cancel_event_locked(job_id).set()

    def stop(self) -> None:
        # stdin closed (the server is gone) or shutdown: abandon the current job at its next step and exit.
        # The server keeps the job queued and runs it again, so finishing it here would only waste the GPU.
        with self._lock:
            self._stopping.set()
            for event in self._cancels.values():
                event.set()
        self._work.put(None)

    def cancel_event(self, job_id: str) -> threading.Event:
        with self._lock:
            return self._cancel_event_locked(job_id)

    def _cancel_event_locked(self, job_id: str) -> threading.Event:
        event = self._cancels.setdefault(job_id, threading.Event())
        if self._stopping.is_set():
            event.set()
        return event

    def serve(self) -> None:
        """Runs queued jobs one at a time until stop()."""
        while (request := self._work.get()) is not None and not self._stopping.is_set():
            self.run_one(request)

    def run_one(self, request: GenerateRequest) -> None:
        """Runs one job and answers it with exactly one done or error event."""
        job_id = request["jobId"]
        try:
            self._send(self._run_job(request, self.cancel_event(job_id)))
        except JobFailed as exc:
            self._send_error(job_id, exc.code, str(exc))
        except Exception as exc:  # noqa: BLE001 - keep the process alive for the next job
            log.exception("job %s failed", job_id)
            self._send_error(job_id, "generation_failed", f"{type(exc).__name__}: {exc}")
        finally:
            with self._lock:
                self._cancels.pop(job_id, None)
                self._pending.discard(job_id)

    def _send_error(self, job_id: str | None, code: ErrorCode, message: str) -> None:
        self._send(ErrorEvent(type="error", jobId=job_id, code=code, message=message))
