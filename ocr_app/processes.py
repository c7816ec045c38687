"""Is a process of this machine still there? For work a killed process left behind.

``os.kill(pid, 0)`` alone is not enough: a killed worker whose parent died too
is re-parented to PID 1, which in a container often never reaps it, so it
stays a zombie for good; and a pid is reused by a later process. Where /proc
exists, a zombie, or a process started after the work was last touched, is not
the process that did it.

A pid means something only in its PID namespace: containers that share a
hostname (``--uts=host``, the same ``hostname:`` in a compose file) but not
their PIDs would each see the other's live workers as gone. So work names its
process ``host:pidns:pid`` (the namespace's number, from ``/proc/self/ns/pid``),
and only the processes of our host and our namespace are judged. A name without
a namespace (``host:pid``: rows written before names had one, or by a process
that could not read it) is judged by its host alone, as it always was.
"""

from __future__ import annotations

import functools
import os
import re
import socket
from pathlib import Path

PID_NAMESPACE_LINK = "/proc/self/ns/pid"


@functools.cache
def pid_namespace() -> str | None:
    """This process's PID namespace: the number in ``/proc/self/ns/pid``'s target (``pid:[4026531836]``),
    or None where it cannot be read (no /proc, not Linux). A process never changes its own."""
    try:
        target = os.readlink(PID_NAMESPACE_LINK)
    except OSError:
        return None
    match = re.fullmatch(r"pid:\[([0-9]+)\]", target)
    return match.group(1) if match else None


def this_process() -> str:
    """How work names the process doing it: ``host:pidns:pid``, or ``host:pid`` where the PID namespace
    cannot be read."""
    namespace = pid_namespace()
    host = socket.gethostname()
    return f"{host}:{namespace}:{os.getpid()}" if namespace else f"{host}:{os.getpid()}"


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def parse_process(name: str) -> tuple[str, str | None, str]:
    """``(host, PID namespace, pid)`` of a name ``this_process`` gave; the namespace is None in a name without
    one (``host:pid``). A hostname holds no colon, so the parts cannot be confused."""
    rest, _, pid = name.rpartition(":")
    host, colon, namespace = rest.rpartition(":")
    if colon and _number(namespace):
        return host, namespace, pid
    return rest, None, pid


def judged_here(host: str, namespace: str | None) -> bool:
    """Whether a process named with ``host`` and ``namespace`` can be judged here: one of this machine and this
    PID namespace, or, named without a namespace, of this machine (the judgement names always had). A named
    namespace is never ours where ours cannot be read."""
    if host != socket.gethostname():
        return False
    return namespace is None or namespace == pid_namespace()


def names_here_pattern() -> str:
    """A regular expression (a database's ``__regex``: SQLite and PostgreSQL alike) for the names that
    ``dead_here`` can judge: our processes (``host:pidns:pid``) and this host's names without a namespace, not
    another namespace's."""
    namespace = pid_namespace()
    return rf"^{re.escape(socket.gethostname())}:{f'({namespace}:)?' if namespace else ''}[0-9]+$"


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
    """Whether ``worker`` (``host:pidns:pid``, or ``host:pid``) names a process of this machine and PID namespace
    that is gone, or, given ``since`` (the datetime it took the work), a later process that reuses its pid (a
    restarted container hands out the same pids again); other machines' and other namespaces' workers are not
    judged (False)."""
    host, namespace, pid = parse_process(worker)
    touched_at = since.timestamp() if since is not None else None
    return judged_here(host, namespace) and _number(pid) and not process_alive(int(pid), touched_at)
