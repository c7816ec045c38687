"""Which half-written uploads are abandoned: the writer's process is gone, a zombie, or a later process."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from ocr_app.storage import TEMP_PREFIX, incoming_folder, is_abandoned, sweep_abandoned


def temp_file(root: Path, pid: int, host: str | None = None) -> Path:
    folder = incoming_folder(root)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{TEMP_PREFIX}{host or socket.gethostname()}-{pid}-abc_123"
    path.write_bytes(b"half an image")
    return path


def test_a_live_writer_keeps_its_file(tmp_path):
    path = temp_file(tmp_path, os.getpid())
    assert not is_abandoned(path)
    assert sweep_abandoned(tmp_path) == 0 and path.exists()


def test_a_dead_writer_leaves_an_abandoned_file(tmp_path):
    child = subprocess.Popen(["true"])
    child.wait()
    path = temp_file(tmp_path, child.pid)
    assert is_abandoned(path)
    assert sweep_abandoned(tmp_path) == 1 and not path.exists()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_zombie_writer_is_dead(tmp_path):
    """A killed worker whose parent died is never reaped where PID 1 does not reap: still a zombie."""
    child = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        assert is_abandoned(temp_file(tmp_path, child.pid))
    finally:
        child.wait()


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_a_reused_pid_is_not_the_writer(tmp_path):
    path = temp_file(tmp_path, os.getpid())
    an_hour_ago = time.time() - 3600 - time.monotonic()  # before this process started, whatever its age
    os.utime(path, (an_hour_ago, an_hour_ago))
    assert is_abandoned(path)


def test_another_hosts_files_are_not_judged(tmp_path):
    child = subprocess.Popen(["true"])
    child.wait()
    path = temp_file(tmp_path, child.pid, host="some-other-host")
    assert not is_abandoned(path)


def test_work_of_a_zombie_or_a_dead_process_is_taken_over_and_other_hosts_are_not_judged():
    from ocr_app.processes import dead_here, this_process

    host = socket.gethostname()
    zombie = subprocess.Popen(["true"])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{zombie.pid}/stat").exists() and \
                Path(f"/proc/{zombie.pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child did not exit"
            time.sleep(0.01)
        assert dead_here(f"{host}:{zombie.pid}")   # exited, not yet reaped
    finally:
        zombie.wait()
    assert dead_here(f"{host}:{zombie.pid}") and not dead_here(this_process())   # reaped
    assert not dead_here(f"elsewhere:{zombie.pid}") and not dead_here("garbage")


def test_a_process_that_reuses_a_workers_pid_is_not_that_worker():
    import datetime

    from ocr_app.processes import dead_here, this_process

    an_hour_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=3600 + time.monotonic())
    assert dead_here(this_process(), since=an_hour_ago)   # this process started after that work was taken
    assert not dead_here(this_process(), since=datetime.datetime.now(datetime.UTC))
