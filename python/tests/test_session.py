"""The runner's session loop with a fake job in place of diffusers: cancel, stop and error paths in milliseconds."""

import json
import queue
import threading

import pytest

from diffusers_runner.protocol import GENERATE_FIELDS, JobFailed
from diffusers_runner.session import RunnerSession

WAIT_SECONDS = 10


class FakeJobs:
    """Stands in for run_generate: a job named "slow-*" waits for its cancel; "boom" raises; others finish."""

    def __init__(self) -> None:
        self.started: queue.Queue[str] = queue.Queue()

    def __call__(self, request, cancel: threading.Event):
        job_id = request["jobId"]
        self.started.put(job_id)
        if job_id == "boom":
            raise RuntimeError("the GPU caught fire")
        if job_id.startswith("slow") and not cancel.wait(WAIT_SECONDS):
            raise AssertionError(f"{job_id} was never cancelled")
        if cancel.is_set():
            raise JobFailed("cancelled", "cancelled while running")
        return {"type": "done", "jobId": job_id}


class Harness:
    """Runs a session on a thread, fed by a line queue (None closes stdin), collecting its events."""

    def __init__(self) -> None:
        self.jobs = FakeJobs()
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.events: queue.Queue[dict] = queue.Queue()
        self.session = RunnerSession(self.events.put, self.jobs)
        self.thread = threading.Thread(target=self.session.run, args=(iter(self.lines.get, None),), daemon=True)
        self.thread.start()

    def send(self, message: dict | str) -> None:
        self.lines.put(message if isinstance(message, str) else json.dumps(message))

    def generate(self, job_id: str) -> None:
        self.send({**dict.fromkeys(GENERATE_FIELDS), "type": "generate", "jobId": job_id})

    def next_event(self) -> dict:
        return self.events.get(timeout=WAIT_SECONDS)

    def assert_exits(self) -> None:
        self.thread.join(WAIT_SECONDS)
        assert not self.thread.is_alive(), "session kept serving after stdin closed"


@pytest.fixture
def harness():
    running = Harness()
    yield running
    running.lines.put(None)
    running.assert_exits()


def test_a_cancel_stops_the_running_job(harness):
    harness.generate("slow-1")
    assert harness.jobs.started.get(timeout=WAIT_SECONDS) == "slow-1"
    harness.send({"type": "cancel", "jobId": "slow-1"})
    assert harness.next_event() == {"type": "error", "jobId": "slow-1", "code": "cancelled", "message": "cancelled while running"}


def test_a_late_cancel_does_not_poison_a_rerun_of_the_same_job(harness):
    harness.generate("again")
    assert harness.next_event() == {"type": "done", "jobId": "again"}
    harness.send({"type": "cancel", "jobId": "again"})
    harness.generate("again")
    assert harness.next_event() == {"type": "done", "jobId": "again"}


def test_a_bad_request_is_answered_under_its_job_id(harness):
    harness.send({"type": "generate", "jobId": "incomplete", "prompt": "x"})
    event = harness.next_event()
    assert (event["jobId"], event["code"]) == ("incomplete", "bad_request") and "lacks model" in event["message"]
    harness.send("not json")
    assert harness.next_event()["jobId"] is None


def test_an_unexpected_exception_fails_the_job_and_the_runner_carries_on(harness):
    harness.generate("boom")
    assert harness.next_event() == {"type": "error", "jobId": "boom", "code": "generation_failed", "message": "RuntimeError: the GPU caught fire"}
    harness.generate("after")
    assert harness.next_event() == {"type": "done", "jobId": "after"}


@pytest.mark.parametrize("close", ["stdin closes", "shutdown"])
def test_stopping_abandons_the_running_job_and_leaves_queued_ones(harness, close):
    harness.generate("slow-running")
    harness.generate("queued")
    assert harness.jobs.started.get(timeout=WAIT_SECONDS) == "slow-running"
    if close == "shutdown":
        harness.send({"type": "shutdown"})
    else:
        harness.lines.put(None)
    harness.assert_exits()
    assert harness.next_event()["code"] == "cancelled"
    assert harness.events.empty() and harness.jobs.started.empty(), "the queued job must be left for the server to rerun"
