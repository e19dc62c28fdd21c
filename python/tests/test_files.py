"""Files written whole: a failed write leaves nothing behind, and a full disk is told apart from other failures."""

import errno
import os

import pytest

from diffusers_runner.files import output_failed, write_whole


def test_a_write_that_fails_for_lack_of_room_leaves_no_partial_file(tmp_path):
    target = tmp_path / "job.png"

    def write(partial: str) -> None:
        with open(partial, "wb") as file:
            file.write(b"half an image")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with pytest.raises(OSError) as raised:
        write_whole(str(target), write)
    assert list(tmp_path.iterdir()) == []
    failure = output_failed(raised.value, str(target))
    assert failure.code == "disk_full"
    assert str(failure).startswith(f"no room to write the image in {tmp_path} (No space left on device): free space on that disk")


def test_other_write_failures_are_generation_failures_naming_the_file(tmp_path):
    failure = output_failed(OSError(errno.EACCES, os.strerror(errno.EACCES)), str(tmp_path / "job.png"))
    assert failure.code == "generation_failed"
    assert str(tmp_path / "job.png") in str(failure)


def test_a_whole_write_lands_under_its_name_only(tmp_path):
    target = tmp_path / "sub" / "job.png"
    write_whole(str(target), lambda partial: open(partial, "wb").write(b"png"))
    assert target.read_bytes() == b"png"
    assert sorted(path.name for path in target.parent.iterdir()) == ["job.png"]
