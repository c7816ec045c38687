"""Workers of containers that share our hostname but not our PID namespace are never judged dead here.

A worker was named ``host:pid``, and a worker of our host whose pid is gone was judged dead: its job pages
queued again, its job-less pages (a live request's) forgotten at start-up, its half-written uploads swept.
A pid of another PID namespace says nothing about ours, so names carry the namespace: ``host:pidns:pid``.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ocr_app import processes
from ocr_app.processes import dead_here, names_here_pattern, pid_namespace, this_process

ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()


def _our_namespace() -> str:
    try:
        return re.fullmatch(r"pid:\[(\d+)\]", os.readlink("/proc/self/ns/pid")).group(1)
    except OSError:
        pytest.skip("no /proc/self/ns/pid here")


def _gone_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def _since() -> datetime.datetime:
    """When the work was taken: now (a process that takes a gone pid later is not the worker either)."""
    return datetime.datetime.now(datetime.UTC)


@pytest.fixture
def no_readable_namespace(monkeypatch, tmp_path):
    """Where /proc/self/ns/pid cannot be read (no /proc, not Linux)."""
    monkeypatch.setattr(processes, "PID_NAMESPACE_LINK", str(tmp_path / "no-such-link"))
    pid_namespace.cache_clear()
    yield
    monkeypatch.undo()
    pid_namespace.cache_clear()


def test_a_process_is_named_with_its_host_pid_namespace_and_pid():
    assert this_process() == f"{HOST}:{_our_namespace()}:{os.getpid()}"
    assert len(this_process()) <= 200   # Page.processed_by and BookAdaptation.processed_by hold 200


def test_a_gone_pid_is_judged_dead_in_our_namespace_only():
    ours, gone, since = _our_namespace(), _gone_pid(), _since()
    other = str(int(ours) + 1)
    assert dead_here(f"{HOST}:{ours}:{gone}", since)
    assert not dead_here(f"{HOST}:{other}:{gone}", since)   # its pid may well be alive there
    assert not dead_here(f"elsewhere:{ours}:{gone}", since)
    assert not dead_here(this_process(), since) and not dead_here(f"{HOST}:{other}:{os.getpid()}", since)


def test_a_name_written_before_names_had_a_namespace_is_judged_as_before():
    _our_namespace()
    gone = _gone_pid()
    assert dead_here(f"{HOST}:{gone}", _since()) and not dead_here(f"{HOST}:{os.getpid()}", _since())
    assert not dead_here(f"elsewhere:{gone}") and not dead_here("garbage") and not dead_here(f"{HOST}:")


def test_where_the_namespace_cannot_be_read_names_and_judgements_are_as_before(no_readable_namespace):
    gone = _gone_pid()
    assert pid_namespace() is None and this_process() == f"{HOST}:{os.getpid()}"
    assert dead_here(f"{HOST}:{gone}", _since()) and not dead_here(this_process(), _since())
    assert not dead_here(f"{HOST}:4026531836:{gone}", _since())   # a namespace we cannot tell is ours
    assert re.match(names_here_pattern(), f"{HOST}:{gone}")
    assert not re.match(names_here_pattern(), f"{HOST}:4026531836:{gone}")


def _can_unshare() -> bool:
    if not (shutil.which("unshare") and Path("/proc/self/ns/pid").exists()):
        return False
    return subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs to create a PID namespace (root, unshare)")
def test_a_live_worker_of_a_container_sharing_our_hostname_is_not_judged_dead():
    """A real second PID namespace on this host (a container with our hostname), whose worker has a pid that is
    gone in ours: it was judged dead. Named with its namespace, it is not."""
    gone = _gone_pid()
    # in the new namespace, the worker gets the pid that is gone in ours (ns_last_pid: the pid given last)
    worker = ("import time; from ocr_app.processes import this_process; print(this_process(), flush=True); "
              "time.sleep(60)")
    container = (f"import subprocess, sys; open('/proc/sys/kernel/ns_last_pid', 'w').write('{gone - 1}'); "
                 f"subprocess.run([sys.executable, '-c', {worker!r}])")
    process = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", container],
                               cwd=ROOT, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        name = process.stdout.readline().strip()
        host, namespace, pid = processes.parse_process(name)
        assert (host, pid) == (HOST, str(gone)) and namespace not in (None, pid_namespace()), name
        assert not dead_here(name, _since())   # alive in its namespace
        assert dead_here(f"{HOST}:{pid_namespace()}:{gone}", _since())   # the same pid is gone in ours
    finally:
        os.killpg(process.pid, 9)
        process.wait()


# -- the clean-ups that select this machine's rows by name -------------------------------------------------------

@pytest.fixture
def named(user):
    """Pages named after: our gone process, another namespace's process with that pid, our gone process under the
    name format of before, our live process, and a host whose name starts with ours."""
    from ocr_app.registry import active_version

    ours, gone = _our_namespace(), _gone_pid()
    return {
        "ours, gone": f"{HOST}:{ours}:{gone}",
        "other namespace": f"{HOST}:{int(ours) + 1}:{gone}",
        "before namespaces, gone": f"{HOST}:{gone}",
        "ours, alive": this_process(),
        "another host": f"{HOST}2:{ours}:{gone}",
    }, user, active_version()


def _job_pages(user, version, names: dict[str, str]):
    from django.utils import timezone

    from ocr_app.jobs.models import Job, Page

    job = Job.objects.create(user=user, name="book", model_version=version, formats=["txt"], pages_total=len(names))
    now = timezone.now()
    return {label: Page.objects.create(job=job, index=index, name=f"p{index}", source_name=f"p{index}.png",
                                       status=Page.Status.RUNNING, processed_by=name, started_at=now, attempts=1).pk
            for index, (label, name) in enumerate(names.items(), start=1)}


@pytest.mark.django_db
def test_the_runner_queues_again_the_job_pages_of_our_dead_processes_only(named):
    from ocr_app.jobs import runner
    from ocr_app.jobs.models import Page

    names, user, version = named
    ids = _job_pages(user, version, names)
    assert runner.release_pages_of_dead_processes() == 2
    queued = set(Page.objects.filter(status=Page.Status.QUEUED).values_list("pk", flat=True))
    assert queued == {ids["ours, gone"], ids["before namespaces, gone"]}


@pytest.mark.django_db
def test_start_up_forgets_the_job_less_pages_of_our_dead_processes_only(named):
    from django.utils import timezone

    from ocr_app.jobs.models import Page
    from ocr_app.pages.services import forget_pages_of_dead_requests, pages_of_dead_requests

    names, user, version = named
    ids = {label: Page.objects.create(job=None, user=user, model_version=version, index=1, name="scan",
                                      source_name="scan.png", status=Page.Status.RUNNING, processed_by=name,
                                      started_at=timezone.now()).pk
           for label, name in names.items()}
    assert {page.pk for page in pages_of_dead_requests()} == {ids["ours, gone"], ids["before namespaces, gone"]}
    assert forget_pages_of_dead_requests() == 2
    assert set(Page.objects.values_list("pk", flat=True)) == {
        ids["other namespace"], ids["ours, alive"], ids["another host"]}


@pytest.mark.django_db
def test_the_name_filter_selects_our_namespaces_rows_and_this_hosts_older_names(named):
    from ocr_app.jobs.models import Page

    names, user, version = named
    ids = _job_pages(user, version, {**names, "garbage": f"{HOST}:{names['ours, alive']}:junk"})
    selected = set(Page.objects.filter(processed_by__regex=names_here_pattern()).values_list("pk", flat=True))
    assert selected == {ids["ours, gone"], ids["before namespaces, gone"], ids["ours, alive"]}

