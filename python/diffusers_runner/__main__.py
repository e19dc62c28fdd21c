"""Entry point: `python -m diffusers_runner`. Reads requests on stdin, answers events on stdout, logs on stderr."""

from __future__ import annotations

import logging
import os
import platform
import signal
import sys

from .protocol import ReadyEvent, claim_stdout
from .session import RunnerSession


def main() -> int:
    # Ctrl-C at a terminal reaches the whole process group; the server decides what happens to the job and tells
    # the runner over stdin (or closes it), so the runner must not die under the job on its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
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
