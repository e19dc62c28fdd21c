"""Thousands of malformed request lines at the runner's session: none may raise, and each one the runner cannot
take is answered with bad_request (under its jobId when it has one), so the server never waits on it."""

import json
import random

from diffusers_runner.session import RunnerSession

SEED = 20261128
VALID = {
    "type": "generate",
    "jobId": "j",
    "model": {"name": "m", "path": "/m"},
    "prompt": "p",
    "negativePrompt": None,
    "width": 256,
    "height": 256,
    "steps": 2,
    "cfgScale": 7,
    "seed": 1,
    "scheduler": None,
    "refiner": None,
    "outputPath": "/tmp/x.png",
}


def junk_value(rnd: random.Random, depth: int = 0):
    kind = rnd.randrange(9 if depth < 2 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rnd.choice([True, False])
    if kind == 2:
        return rnd.choice([0, -1, 2**64, 1e308, float("-inf")]) if rnd.random() < 0.3 else rnd.randint(-(10**9), 10**9)
    if kind == 3:
        return "".join(chr(rnd.randrange(0x20, 0x2FFF)) for _ in range(rnd.randrange(12)))
    if kind == 4:
        return "".join(chr(rnd.randrange(0, 32)) for _ in range(rnd.randrange(6)))
    if kind == 5:
        return rnd.choice(["generate", "cancel", "shutdown", "explode", ""])
    if kind == 6:
        return [junk_value(rnd, depth + 1) for _ in range(rnd.randrange(4))]
    return {rnd.choice(list(VALID) + ["extra", "type"]): junk_value(rnd, depth + 1) for _ in range(rnd.randrange(5))}


def junk_line(rnd: random.Random) -> str:
    choice = rnd.randrange(6)
    if choice == 0:  # a valid request cut short
        text = json.dumps({**VALID, "jobId": f"cut-{rnd.randrange(10**6)}"})
        return text[: rnd.randrange(1, len(text))]
    if choice == 1:  # a generate missing fields, or with a wrong type of jobId
        request = {key: value for key, value in VALID.items() if rnd.random() < 0.7}
        request["type"] = "generate"
        if rnd.random() < 0.3:
            request["jobId"] = junk_value(rnd)
        return json.dumps(request, default=str)
    if choice == 2:  # a huge line
        return json.dumps({"type": "cancel", "jobId": "x" * (1024 * 1024)}) if rnd.random() < 0.5 else "x" * (1024 * 1024)
    if choice == 3:  # a valid request with unknown fields besides
        return json.dumps({**VALID, "jobId": f"extra-{rnd.randrange(10**6)}", "surprise": junk_value(rnd)}, default=str)
    return json.dumps(junk_value(rnd), default=str)


def test_malformed_lines_never_break_the_session():
    rnd = random.Random(SEED)
    sent: list[dict] = []
    session = RunnerSession(sent.append, lambda request, cancel: {"type": "done", "jobId": request["jobId"]})
    for _ in range(3000):
        line = junk_line(rnd)
        if not line.strip():
            continue
        sent.clear()
        keep_reading = session.handle_line(line)
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("type") == "shutdown":
            assert keep_reading is False
            continue
        assert keep_reading is True
        for event in sent:
            assert event["type"] == "error" and event["code"] == "bad_request" and event["message"], event
            job_id = parsed.get("jobId") if isinstance(parsed, dict) else None
            assert event["jobId"] == (job_id if isinstance(job_id, str) else None)
    # Still taking requests: a good one after all of it is accepted, and it runs and is answered.
    sent.clear()
    good = {**VALID, "jobId": "after-the-junk"}
    assert session.handle_line(json.dumps(good)) is True
    assert sent == []
    session.run_one(good)
    assert sent == [{"type": "done", "jobId": "after-the-junk"}]
