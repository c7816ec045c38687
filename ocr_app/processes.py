"""Is a process of this machine still there? For work a killed process left behind.

``os.kill(pid, 0)`` alone is not enough: a killed worker whose parent died too
is re-parented to PID 1, which in a container often never reaps it, so it
stays a zombie for good; and a pid is reused by a later process. Where /proc
exists, a zombie, or a process started after the work was last touched, is not
the process that did it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def this_process() -> str:
    """How work names the process doing it: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_alive(pid: int, touched_at: float | None = None) -> bool:
    """Whether process ``pid`` of this machine runs and, given ``touched_at`` (a Unix time), could have
    touched the work then (it had started by then)."""
    boot = _boot_time()
    if boot is not None:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except FileNotFoundError:
            return False
        except OSError:   # /proc mounted with hidepid: another user's process cannot be read, ask the kernel
            fields = None
        if fields is not None:
            if fields[0] in ("Z", "X", "x"):
                return False
            started_at = boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")
            return touched_at is None or started_at <= touched_at + 1.0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def dead_here(worker: str, since=None) -> bool:
    """Whether ``worker`` (``host:pid``) names a process of this machine that is gone, or, given ``since``
    (the datetime it took the work), a later process that reuses its pid (a restarted container hands out
    the same pids again); other machines' workers are not judged (False)."""
    host, _, pid = worker.rpartition(":")
    touched_at = since.timestamp() if since is not None else None
    return host == socket.gethostname() and pid.isdigit() and not process_alive(int(pid), touched_at)
