"""Adapting a model to a book: ask for it, run it (in any worker, once), gate it, use it, re-read the book.

``run_adaptation`` is what the Celery task on the training queue and the in-process runner both run.
Training itself is the project's own ``python -m training.adapt`` in a subprocess: TensorFlow is a
training dependency, and this module is imported by the web process, which must never load it.
A worker claims an adaptation with a heartbeat lease, so a redelivered message while the first
worker is alive waits (the task retries) and one after it died takes over: retried, never duplicated.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from recognition import model_files
from recognition.adaptation_gate import judge_adaptation

from .. import engine, registry
from ..errors import ApiError
from ..jobs.models import Job
from ..models import ModelVersion, Recognition
from ..processes import dead_here, this_process
from . import dispatch, selectors
from .models import BookAdaptation

log = logging.getLogger("ocr_app.books")

HEARTBEAT_SECONDS = 2.0
LOG_TAIL_CHARS = 6000
MAX_CHANGED_LINES = 1000
RERECOGNISE_CHUNK = 64


def request_adaptation(job: Job, user) -> BookAdaptation:
    """Queue an adaptation of ``job``'s current model to its reviewed lines (409 when it cannot start)."""
    reviewed = selectors.reviewed_lines(job).count()
    if reviewed < settings.OCR_ADAPT_MIN_LINES:
        raise ApiError("not_enough_reviewed_lines", f"book {job.pk} has {reviewed} reviewed lines; adapting needs "
                                                    f"at least {settings.OCR_ADAPT_MIN_LINES}", 409)
    base = job.model_version
    if model_files.keras_twin(base.file_path) is None:
        raise ApiError("model_not_adaptable", f"book {job.pk} was read by {base.name} {base.version}, which cannot be "
                       "fine-tuned: no Keras checkpoint beside its file (an ensemble, or an ONNX file registered "
                       "alone)", 409)
    try:
        with transaction.atomic():
            adaptation = BookAdaptation.objects.create(job=job, requested_by=user, base_model=job.model_version)
            transaction.on_commit(lambda: dispatch.enqueue(adaptation.pk))
    except IntegrityError:  # the database's one-open-adaptation-per-book constraint
        raise ApiError("adaptation_in_progress", f"book {job.pk} is already being adapted", 409) from None
    log.info("adaptation %s of book %s queued by %s (%d reviewed lines)", adaptation.pk, job.pk, user, reviewed)
    return adaptation


def claim(adaptation_id: int) -> str:
    """Take the adaptation for this process: "claimed", "busy" (a live worker has it) or "finished"."""
    adaptation = BookAdaptation.objects.filter(pk=adaptation_id).first()
    if adaptation is None or adaptation.status not in BookAdaptation.OPEN:
        return "finished"
    now = timezone.now()
    takeable = Q(status=BookAdaptation.Status.QUEUED) | Q(status=BookAdaptation.Status.RUNNING,
                                                         claimed_until__lt=now)
    if adaptation.status == BookAdaptation.Status.RUNNING and dead_here(adaptation.processed_by, adaptation.started_at):
        takeable |= Q(status=BookAdaptation.Status.RUNNING, processed_by=adaptation.processed_by)
    won = BookAdaptation.objects.filter(takeable, pk=adaptation_id).update(
        status=BookAdaptation.Status.RUNNING, processed_by=this_process(), attempts=F("attempts") + 1,
        claimed_until=now + datetime.timedelta(seconds=settings.OCR_ADAPT_LEASE_SECONDS),
        started_at=now)
    return "claimed" if won else "busy"


def _still_mine(adaptation_id: int, **fields) -> bool:
    """Renew the lease (and store ``fields``); False when another worker has taken the adaptation over."""
    lease = timezone.now() + datetime.timedelta(seconds=settings.OCR_ADAPT_LEASE_SECONDS)
    return bool(BookAdaptation.objects.filter(pk=adaptation_id, processed_by=this_process(),
                                              status=BookAdaptation.Status.RUNNING)
                .update(claimed_until=lease, **fields))


def _finish(adaptation_id: int, status: str, reason: str, **fields) -> None:
    BookAdaptation.objects.filter(pk=adaptation_id, processed_by=this_process()).update(
        status=status, reason=reason, finished_at=timezone.now(), claimed_until=None, **fields)
    log.info("adaptation %s %s: %s", adaptation_id, status, reason)


def run_adaptation(adaptation_id: int) -> str:
    """Run one adaptation to its end; returns "done", "busy" (retry later) or "skipped"."""
    claimed = claim(adaptation_id)
    if claimed != "claimed":
        return "skipped" if claimed == "finished" else "busy"
    adaptation = BookAdaptation.objects.select_related("job", "base_model", "adapted_model").get(pk=adaptation_id)
    try:
        if adaptation.adapted_model is None:   # a retry after the model was accepted goes straight to re-reading
            outcome = _train_and_gate(adaptation)
            if outcome != "accepted":
                return "done" if outcome != "lost" else "skipped"
            adaptation.refresh_from_db()
        _rerecognise_book(adaptation)
    except Exception as exc:   # a bug or a lost file: the adaptation ends, saying why, instead of looping
        log.exception("adaptation %s failed", adaptation_id)
        _finish(adaptation_id, BookAdaptation.Status.FAILED, f"internal error: {type(exc).__name__}: {exc}")
        raise
    return "done"


def _work_dir(adaptation: BookAdaptation) -> Path:
    return (Path(settings.OCR_ADAPT_DIR) / f"book-{adaptation.job_id}" / f"adaptation-{adaptation.pk}"
            / f"attempt-{adaptation.attempts}")


def write_book_lines(job: Job, folder: Path) -> tuple[Path, Path, int, int]:
    """The book's reviewed lines as two line folders: every Nth held out to measure, the rest to train on."""
    train, heldout = folder / "train", folder / "heldout"
    counts = [0, 0]
    for position, recognition in enumerate(selectors.reviewed_lines(job)):
        held = position % settings.OCR_ADAPT_HELDOUT_EVERY == settings.OCR_ADAPT_HELDOUT_EVERY - 1
        target = heldout if held else train
        target.mkdir(parents=True, exist_ok=True)
        name = f"r{recognition.pk:08d}"
        with recognition.image.file.open("rb") as image:
            (target / f"{name}{recognition.image.extension or '.png'}").write_bytes(image.read())
        (target / f"{name}.gt.txt").write_text(recognition.final_text + "\n", encoding="utf-8")
        counts[held] += 1
    return train, heldout, counts[0], counts[1]


def adapted_model_name(base: ModelVersion, job: Job) -> str:
    root = re.sub(r"(-book\d+)?(-int8)?$", "", base.name)
    return f"{root}-book{job.pk}"


def _training_command(adaptation: BookAdaptation, train: Path, heldout: Path, out: Path) -> list[str]:
    base = adaptation.base_model
    command = [sys.executable, "-m", "training.adapt", "--base", str(base.file_path),
               "--global-model", str(registry.active_version(refresh=True).file_path),
               "--train", str(train), "--heldout", str(heldout), "--out", str(out),
               "--name", adapted_model_name(base, adaptation.job), "--version", f"a{adaptation.pk}",
               "--cache", str(Path(settings.OCR_ADAPT_DIR) / "cache")]
    if settings.OCR_REFERENCE_SET:
        command += ["--reference", settings.OCR_REFERENCE_SET]
    if base.metadata.get("quantization"):   # the book keeps the speed it had: int8 in, int8 out
        command.append("--int8")
    return command + shlex.split(settings.OCR_ADAPT_ARGS)


def _die_with_parent() -> None:
    """In the training child: a worker killed outright (SIGKILL) takes its training run with it."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the orphan finishes on its own and is ignored
        pass


def _progress(out: Path, phase: str) -> dict:
    state_path = out / "run" / "state.json"
    progress = {"phase": phase}
    try:
        state = json.loads(state_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return progress
    progress.update(epoch=state.get("epoch"), best_epoch=state.get("best_epoch"),
                    epochs=(state.get("args") or {}).get("epochs"),
                    history=[{"epoch": h["epoch"], "heldout_cer": h["val_cer"], "loss": h["train_loss"]}
                             for h in state.get("history", [])])
    return progress


def _tail(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - LOG_TAIL_CHARS))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def _train_and_gate(adaptation: BookAdaptation) -> str:
    """Train in a subprocess, check the result, register and use it if it passes: accepted/rejected/failed/lost."""
    started = time.monotonic()
    work = _work_dir(adaptation)
    work.mkdir(parents=True, exist_ok=True)
    train, heldout, train_count, heldout_count = write_book_lines(adaptation.job, work / "lines")
    out, log_path = work / "out", work / "training.log"
    if not _still_mine(adaptation.pk, train_lines=train_count, heldout_lines=heldout_count,
                       progress={"phase": "starting"}, log=""):
        return "lost"
    command = _training_command(adaptation, train, heldout, out)
    log.info("adaptation %s: %s", adaptation.pk, shlex.join(command))
    with log_path.open("wb") as output:
        child = subprocess.Popen(command, cwd=settings.BASE_DIR, stdout=output, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        while child.poll() is None:
            time.sleep(HEARTBEAT_SECONDS)
            if not _still_mine(adaptation.pk, progress=_progress(out, "training"), log=_tail(log_path)):
                child.kill()
                child.wait()
                return "lost"
    minutes = (time.monotonic() - started) / 60
    _still_mine(adaptation.pk, progress=_progress(out, "checking"), log=_tail(log_path))
    if child.returncode != 0:
        tail = _tail(log_path).strip().splitlines()
        why = tail[-1] if tail else f"exit status {child.returncode}"
        if "No module named" in why:
            why += " (training needs requirements-train.txt: run the training worker, `make worker-train`)"
        _finish(adaptation.pk, BookAdaptation.Status.FAILED, f"training failed: {why}", minutes=minutes)
        return "failed"
    result = json.loads((out / "result.json").read_text(encoding="utf-8"))
    measured = dict(before_cer=result["before_cer"], after_cer=result["after_cer"],
                    reference_cer=result.get("reference_cer"), global_reference_cer=result["global_reference_cer"],
                    minutes=minutes)
    heldout_changed = [{"kind": "heldout", "text": line["text"], "before": line["before"], "after": line["after"]}
                       for line in result.get("heldout_changed", [])]
    if result.get("model") is None:
        _finish(adaptation.pk, BookAdaptation.Status.FAILED, result["reason"], **measured)
        return "failed"
    # The service applies the gate itself, on the numbers measured (the same rule as the command's).
    verdict = judge_adaptation(result["before_cer"], result["after_cer"], result["reference_cer"],
                               result["global_reference_cer"])
    if not verdict.accepted:
        _finish(adaptation.pk, BookAdaptation.Status.REJECTED, verdict.reason, changed_lines=heldout_changed,
                **measured)
        return "rejected"
    with transaction.atomic():
        version = registry.register_model(result["model"], activate=False, check_quality=False)
        ModelVersion.objects.filter(pk=version.pk).update(book=adaptation.job)
        Job.objects.filter(pk=adaptation.job_id).update(model_version=version)   # the book's pages use it
        if not BookAdaptation.objects.filter(pk=adaptation.pk, processed_by=this_process()).update(
                adapted_model=version, reason=verdict.reason, changed_lines=heldout_changed,
                progress={**_progress(out, "re-recognising")}, **measured):
            transaction.set_rollback(True)
            return "lost"
    return "accepted"


def _rerecognise_book(adaptation: BookAdaptation) -> None:
    """Read the book's unreviewed lines again with its adapted model; note the lines whose reading changed.

    A line a reviewer has open right now (an unexpired claim) keeps its reading, so nobody's edit is
    changed under them. Lines already read by the adapted model are skipped: a retry carries on.
    """
    version = adaptation.adapted_model
    recognizer = engine.recognizer_for(version)
    changed = list(adaptation.changed_lines)
    done = adaptation.rerecognised_lines
    while True:
        now = timezone.now()
        chunk = list(selectors.book_recognitions(adaptation.job)
                     .filter(status=Recognition.Status.UNREVIEWED).exclude(model_version=version)
                     .exclude(review_claim__expires_at__gt=now).select_related("image").order_by("id")
                     [:RERECOGNISE_CHUNK])
        if not chunk:
            break
        images = []
        for recognition in chunk:
            with recognition.image.file.open("rb") as handle:
                images.append(handle.read())
        started = time.perf_counter()
        outcomes = recognizer.recognize(images)
        per_line_ms = 1000 * (time.perf_counter() - started) / len(chunk)
        with transaction.atomic():
            for recognition, outcome in zip(chunk, outcomes):
                text = getattr(outcome, "text", "")
                fields = dict(model_version=version, text=text, duration_ms=round(per_line_ms, 2),
                              confidence=getattr(outcome, "confidence", 0.0),
                              characters=[{"char": c.char, "confidence": c.confidence}
                                          for c in getattr(outcome, "characters", [])])
                # Only if still unreviewed: a reviewer who saved it meanwhile wins.
                if Recognition.objects.filter(pk=recognition.pk, status=Recognition.Status.UNREVIEWED).update(
                        **fields) and text != recognition.text and len(changed) < MAX_CHANGED_LINES:
                    changed.append({"kind": "book", "recognition": recognition.pk, "before": recognition.text,
                                    "after": text})
            done += len(chunk)
            if not _still_mine(adaptation.pk, rerecognised_lines=done, changed_lines=changed,
                               progress={**adaptation.progress, "phase": "re-recognising",
                                         "rerecognised": done}):
                transaction.set_rollback(True)
                return
    _finish(adaptation.pk, BookAdaptation.Status.ACCEPTED, adaptation.reason, rerecognised_lines=done,
            changed_lines=changed, progress={**adaptation.progress, "phase": "done", "rerecognised": done})
