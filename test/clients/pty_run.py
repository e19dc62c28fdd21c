"""Runs a command on a pseudo-terminal, as a person at a terminal would, and reports what they would have seen.

    python test/clients/pty_run.py SPEC_JSON

SPEC_JSON: {"argv": [...], "env": {...}, "cwd": "...", "steps": [{"until": "regex", "timeout": 60} | {"send": "text"}
| {"sleep": seconds} | {"signal": "SIGINT"}], "end_timeout": 30}. Each `until` waits for the output so far to match.
Prints one JSON object: {"output": all bytes as text, "exit": code or null, "signal": number or null, "matched": [...]}.
"""

import fcntl
import json
import os
import pty
import struct
import termios
import re
import select
import signal
import sys
import time


def main(spec):
    pid, fd = pty.fork()
    if pid == 0:
        os.chdir(spec.get("cwd", os.getcwd()))
        os.execvpe(spec["argv"][0], spec["argv"], spec["env"])
    # A terminal 30 rows by 100 columns (or COLUMNS), as a person's window would be.
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 30, int(spec["env"].get("COLUMNS", "100")), 0, 0))
    output = b""
    matched = []

    def read_for(seconds):
        nonlocal output
        deadline = time.time() + seconds
        while time.time() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    return False
                if not chunk:
                    return False
                output += chunk
            else:
                finished, _ = os.waitpid(pid, os.WNOHANG)
                if finished:
                    return False
        return True

    for step in spec.get("steps", []):
        if "until" in step:
            deadline = time.time() + step.get("timeout", 60)
            pattern = re.compile(step["until"], re.M)
            while time.time() < deadline and not pattern.search(output.decode("utf8", "replace")):
                if not read_for(0.2):
                    break
            matched.append(bool(pattern.search(output.decode("utf8", "replace"))))
        elif "send" in step:
            os.write(fd, step["send"].encode())
        elif "sleep" in step:
            read_for(step["sleep"])
        elif "signal" in step:
            # The terminal's Ctrl-C goes to the whole foreground process group, as here.
            os.killpg(os.getpgid(pid), getattr(signal, step["signal"]))
    deadline = time.time() + spec.get("end_timeout", 30)
    status = None
    while time.time() < deadline:
        read_for(0.2)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
    else:
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    read_for(0.2)
    print(json.dumps({
        "output": output.decode("utf8", "replace"),
        "exit": os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None,
        "signal": os.WTERMSIG(status) if status is not None and os.WIFSIGNALED(status) else None,
        "matched": matched,
    }))


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
