"""Entry point: `python -m diffusers_runner`. Reads requests on stdin, answers events on stdout, logs on stderr."""

from __future__ import annotations

import logging
import os
import platform
import select
import signal
import sys
import threading

from .protocol import ReadyEvent, claim_stdout
from .session import RunnerSession


def exit_when_stdin_hangs_up() -> None:
    """
    Exits once the server's end of stdin is gone (the server was killed), even while torch still imports and no one
    reads stdin yet: an orphan would import for seconds on CPU the next runner needs. It polls without reading, so
    requests stay for the session; where poll reports no hang-up, the session sees stdin close after the imports.
    """
    if not hasattr(select, "poll"):
        return
    hang_up = select.poll()
    hang_up.register(sys.stdin.fileno(), 0)  # no events asked: poll still reports POLLHUP and POLLERR

    def watch() -> None:
        while not any(flags & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, flags in hang_up.poll()):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="stdin-hang-up", daemon=True).start()


def main() -> int:
    # Ctrl-C at a terminal reaches the whole process group; the server decides what happens to the job and tells
    # the runner over stdin (or closes it), so the runner must not die under the job on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_when_stdin_hangs_up()
    events = claim_stdout()
    logging.basicConfig(
        stream=sys.stderr,
        level=os.environ.get("KITTY_IMAGES_RUNNER_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )

    # Heavy imports after stdout is claimed, so nothing they print can corrupt the protocol.
    import diffusers
    import torch
    import transformers

    from .device import choose_device
    from .generate import run_generate
    from .pipelines import ModelCache

    device = choose_device()
    cache = ModelCache(device, capacity=int(os.environ.get("KITTY_IMAGES_WARM_MODELS", "1")))
    events.send(
        ReadyEvent(
            type="ready",
            device=device.device,
            dtype=device.dtype_name,
            versions={
                "python": platform.python_version(),
                "torch": torch.__version__,
                "diffusers": diffusers.__version__,
                "transformers": transformers.__version__,
            },
            pid=os.getpid(),
        )
    )
    session = RunnerSession(events.send, lambda request, cancel: run_generate(request, cache, cancel, events.send))
    session.run(sys.stdin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
