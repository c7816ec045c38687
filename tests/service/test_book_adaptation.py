"""Book adaptation end to end: reviewed lines of one book -> training.adapt in a subprocess -> gate -> scope.

A tiny real model (tests/conftest.py) is the global model; the book is rendered in a face it never saw
(Lateef) with a small vocabulary, so a minute of CPU makes it measurably better on that book.
"""

from __future__ import annotations

import random
import socket

import pytest
from celery.exceptions import Retry

from ocr_app import engine, registry, services
from ocr_app.books import selectors
from ocr_app.books.models import BookAdaptation
from ocr_app.books.services import request_adaptation, run_adaptation
from ocr_app.books.tasks import adapt_book
from ocr_app.errors import ApiError
from ocr_app.jobs.models import Job, Page, PageLine
from ocr_app.jobs.services import _line_recognitions, _store_line_images
from ocr_app.models import ModelVersion, Recognition
from tests.rendering import png_bytes, render_line

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WORDS = "كتاب الله في من على قال عن".split()
FAST_REFUSAL = "--epochs 1 --steps-per-epoch 1 --lr 0 --replay-lines 0 --reference-lines 6 --no-augment"
# A constant high rate (halved on plateaus), not the product's cosine schedule: these tests are about the
# plumbing, and a tiny model under a cosine rate learns this book too slowly to pass the gate every time.
LEARNS = ("--epochs 10 --steps-per-epoch 20 --batch-size 8 --lr 1e-2 --lr-schedule plateau --patience 10 --no-augment "
          "--replay-lines 24 --reference-lines 12")


@pytest.fixture
def tiny_global(tiny_model, settings, tmp_path):
    """The tiny model as the active global model (the shipped one is deactivated for the test)."""
    settings.OCR_ADAPT_DIR = str(tmp_path / "adaptations")
    settings.OCR_ADAPT_MIN_LINES = 80
    version = registry.register_model(tiny_model, activate=True, check_quality=False)
    registry.forget_active_version()
    return version


def vocabulary_lines(count: int, seed: int) -> list[str]:
    """``count`` different lines (a repeated line would be one image, one recognition)."""
    rng = random.Random(seed)
    lines: dict[str, None] = {}
    while len(lines) < count:
        lines[" ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 4)))] = None
    return list(lines)


def make_book(user, version: ModelVersion, texts: list[str], reviewed: int, name: str = "lateef") -> Job:
    """A book as the jobs service stores it: one page whose lines are recognitions by the book's model."""
    job = Job.objects.create(user=user, name=name, model_version=version, status=Job.Status.DONE, pages_total=1)
    page = Page.objects.create(job=job, index=1, name=f"{name}-p1", source_name="p1.png", status=Page.Status.DONE)
    pngs = [png_bytes(render_line(text, "Lateef-Regular", 36)) for text in texts]
    results = engine.recognizer_for(version).recognize(pngs)
    recognitions = _line_recognitions(results, _store_line_images(pngs, []), version, user, 1.0)
    PageLine.objects.bulk_create([PageLine(page=page, recognition=r, index=i, line_id=f"l{i}", polygon=[])
                                  for i, r in enumerate(recognitions, start=1)])
    for recognition, text in zip(recognitions[:reviewed], texts[:reviewed]):
        Recognition.objects.filter(pk=recognition.pk).update(status=Recognition.Status.CORRECTED,
                                                             corrected_text=text)
    return job


def test_a_book_is_adapted_scoped_to_itself_and_re_read(tiny_global, user, other_user, settings, staff_api,
                                                        staff, client):
    settings.OCR_ADAPT_ARGS = LEARNS
    book = make_book(user, tiny_global, vocabulary_lines(90, seed=1), reviewed=80)
    other_book = make_book(other_user, tiny_global, vocabulary_lines(4, seed=2), reviewed=0, name="other")

    answer = staff_api.post(f"/api/v1/jobs/{book.pk}/adapt/")
    assert answer.status_code == 202, answer.json()
    again = staff_api.post(f"/api/v1/jobs/{book.pk}/adapt/")
    assert again.status_code == 409 and again.json()["error"]["code"] == "adaptation_in_progress"

    assert run_adaptation(answer.json()["id"]) == "done"
    adaptation = BookAdaptation.objects.get(pk=answer.json()["id"])
    assert adaptation.status == BookAdaptation.Status.ACCEPTED, adaptation.reason + adaptation.log[-2000:]
    assert (adaptation.train_lines, adaptation.heldout_lines) == (64, 16)
    assert adaptation.after_cer < adaptation.before_cer                  # better on the book's held-out lines
    assert adaptation.progress["history"] and "epoch" in adaptation.log  # progress and log were kept

    # Scope: the book uses its adapted model; the other book and everyone else keep the global one.
    book.refresh_from_db()
    other_book.refresh_from_db()
    adapted = adaptation.adapted_model
    assert book.model_version == adapted and adapted.book_id == book.pk and not adapted.is_active
    assert other_book.model_version == tiny_global
    assert registry.active_version(refresh=True) == tiny_global
    assert services.choose_model(None) == tiny_global
    assert registry.find_version(adapted.name) is None                    # nobody else can ask for it
    assert adapted.name not in {m["name"] for m in staff_api.get("/api/v1/models/").json()}

    # The book's unreviewed lines were read again by the adapted model; the other book's were not.
    unreviewed = selectors.book_recognitions(book).filter(status=Recognition.Status.UNREVIEWED)
    assert unreviewed.count() == 10 and all(r.model_version == adapted for r in unreviewed)
    assert adaptation.rerecognised_lines == 10
    assert not selectors.book_recognitions(other_book).filter(model_version=adapted).exists()
    assert any(line["kind"] == "heldout" for line in adaptation.changed_lines)

    shown = staff_api.get(f"/api/v1/adaptations/{adaptation.pk}/").json()
    assert shown["status"] == "accepted" and shown["adapted_model"]["name"] == adapted.name
    client.force_login(staff)
    page = client.get(f"/review/books/{book.pk}/").content.decode()
    assert "accepted" in page and "Adapt the model to this book" in page and adapted.name in page
    assert "80 / 90" in client.get("/review/books/").content.decode()


def test_a_worse_model_is_refused_and_a_restarted_worker_retries_without_duplicating(
        tiny_global, user, settings):
    settings.OCR_ADAPT_ARGS = FAST_REFUSAL    # learning rate 0: the candidate is no better than the book's model
    book = make_book(user, tiny_global, vocabulary_lines(85, seed=3), reviewed=80)
    adaptation = request_adaptation(book, user)

    # A worker of this machine took it and was killed (its pid is gone), its lease not yet lapsed.
    dead = _a_dead_pid()
    BookAdaptation.objects.filter(pk=adaptation.pk).update(
        status="running", processed_by=f"{socket.gethostname()}:{dead}", attempts=1,
        claimed_until="2999-01-01T00:00:00Z")
    assert adapt_book(adaptation.pk) == "done"             # the redelivered message takes over
    adaptation.refresh_from_db()
    assert adaptation.status == BookAdaptation.Status.REJECTED and adaptation.attempts == 2
    assert "not better on the book" in adaptation.reason
    assert adaptation.adapted_model is None
    book.refresh_from_db()
    assert book.model_version == tiny_global                # not activated for the book
    assert not ModelVersion.objects.filter(book=book).exists()

    assert adapt_book(adaptation.pk) == "skipped"           # a second delivery runs nothing
    adaptation.refresh_from_db()
    assert adaptation.attempts == 2


def test_a_live_worker_holding_it_makes_a_second_delivery_retry_later(tiny_global, user):
    book = make_book(user, tiny_global, vocabulary_lines(3, seed=4), reviewed=3)
    adaptation = BookAdaptation.objects.create(job=book, base_model=tiny_global, status="running",
                                               processed_by="elsewhere:123", claimed_until="2999-01-01T00:00:00Z")
    with pytest.raises(Retry):
        adapt_book(adaptation.pk)
    adaptation.refresh_from_db()
    assert adaptation.status == "running" and adaptation.processed_by == "elsewhere:123"


def test_adapting_needs_enough_reviewed_lines(tiny_global, user, staff_api, api):
    book = make_book(user, tiny_global, vocabulary_lines(3, seed=5), reviewed=2)
    answer = staff_api.post(f"/api/v1/jobs/{book.pk}/adapt/")
    assert answer.status_code == 409 and answer.json()["error"]["code"] == "not_enough_reviewed_lines"
    assert not BookAdaptation.objects.exists()
    assert api.post(f"/api/v1/jobs/{book.pk}/adapt/").status_code == 403   # reviewers only
    assert staff_api.post("/api/v1/jobs/999999/adapt/").status_code == 404
    with pytest.raises(ApiError):
        request_adaptation(book, user)


def test_a_model_without_a_keras_checkpoint_is_refused_before_anything_is_queued(tiny_model, user, staff_api,
                                                                                 settings, tmp_path):
    """An ensemble (training.ensemble) or an ONNX file registered alone reads lines but cannot be fine-tuned."""
    import shutil

    settings.OCR_ADAPT_MIN_LINES = 2
    alone = tmp_path / "alone" / "tiny-alone.onnx"
    alone.parent.mkdir()
    shutil.copy(tiny_model, alone)  # its .keras stays behind
    version = registry.register_model(alone, activate=True, check_quality=False)
    registry.forget_active_version()
    book = make_book(user, version, vocabulary_lines(3, seed=6), reviewed=3)
    answer = staff_api.post(f"/api/v1/jobs/{book.pk}/adapt/")
    assert answer.status_code == 409, answer.content[:300]
    error = answer.json()["error"]
    assert error["code"] == "model_not_adaptable" and version.name in error["message"]
    assert not BookAdaptation.objects.exists()


def _a_dead_pid() -> int:
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_a_celery_training_worker_killed_mid_training_is_replaced_without_a_second_model(
        tiny_global, user, staff_api, service_settings, broker_queue, start_worker):
    """A real `celery worker` on the training queue (Redis) is SIGKILLed while it trains; a second worker
    gets the message again (acks_late), takes the adaptation over and finishes it, once."""
    import time

    env = {"OCR_TRAINING_QUEUE": broker_queue, "OCR_ADAPT_ARGS": LEARNS, "OCR_ADAPT_MIN_LINES": "80",
           "OCR_ADAPT_DIR": service_settings.OCR_ADAPT_DIR}
    first = start_worker(name="train1", env=env)
    service_settings.OCR_TRAINING_QUEUE = broker_queue
    first.wait_ready()
    book = make_book(user, tiny_global, vocabulary_lines(85, seed=6), reviewed=80)
    answer = staff_api.post(f"/api/v1/jobs/{book.pk}/adapt/")
    assert answer.status_code == 202, answer.content
    adaptation = BookAdaptation.objects.get(pk=answer.json()["id"])

    deadline = time.monotonic() + 120
    while not (adaptation.status == "running" and adaptation.progress.get("epoch")):   # an epoch is done
        assert time.monotonic() < deadline, first.log.read_text()
        time.sleep(0.2)
        adaptation.refresh_from_db()
    first.kill()

    second = start_worker(name="train2", env=env)
    deadline = time.monotonic() + 240
    while adaptation.status in BookAdaptation.OPEN:
        assert time.monotonic() < deadline, second.log.read_text()
        time.sleep(0.5)
        adaptation.refresh_from_db()
    assert adaptation.status == BookAdaptation.Status.ACCEPTED, adaptation.reason
    assert adaptation.attempts == 2
    assert ModelVersion.objects.filter(book=book).count() == 1
