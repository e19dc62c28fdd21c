"""Files the server picks up: written whole (a partial file, then a rename), never left half-written on failure."""

from __future__ import annotations

import contextlib
import errno
import os
from typing import Callable

from .protocol import JobFailed

# A full disk, a quota, or a size cap (RLIMIT_FSIZE): waiting in this job will not make room.
_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def write_whole(path: str, write: Callable[[str], None]) -> None:
    """Calls write(partial_path), then renames it to path; a failed write leaves nothing behind to fill the disk."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = path + ".partial"
    try:
        write(partial)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise


def output_failed(exc: OSError, path: str) -> JobFailed:
    """The job error for an image that could not be written: `disk_full` says where room is needed."""
    folder = os.path.dirname(path) or "."
    if exc.errno in _NO_ROOM:
        return JobFailed(
            "disk_full",
            f"no room to write the image in {folder} ({exc.strerror}): free space on that disk, or set KITTY_IMAGES_HOME "
            "to a folder on a disk with room; nothing was stored",
        )
    return JobFailed("generation_failed", f"could not write the image to {path}: {exc}")
