"""A stored page file is never deleted under a request that adopted it.

Two requests storing the same page content race on one file: if the first one's
transaction fails after the second wrote (or adopted) the file but before it
committed, the first one's clean-up must not delete it. Both hold the content's
claim from writing to commit or clean-up, so they take turns.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

from ocr_app.claims import claimed
from ocr_app.jobs import services as job_services
from ocr_app.jobs.models import Page, PageFile
from tests.service import job_pages

pytestmark = pytest.mark.django_db(transaction=True)


def create_job(user, data):
    job_services.create_job(user, [("p.png", data)])


def read_page(user, data):
    from ocr_app.pages.services import recognize_page_upload

    recognize_page_upload(user, "p.png", data)


@pytest.mark.parametrize("store", [create_job, read_page])
def test_a_page_file_is_stored_only_under_its_content_claim(user, store):
    data = job_pages.png(job_pages.small_page(3))
    done = threading.Event()
    failures = []

    def create():
        try:
            store(user, data)
        except Exception as exc:  # reported below, in the test's thread
            failures.append(exc)
        finally:
            done.set()

    with claimed([hashlib.sha256(data).hexdigest()]):
        worker = threading.Thread(target=create)
        worker.start()
        time.sleep(0.5)
        assert not done.is_set() and not PageFile.objects.exists(), "stored while another held the claim"
    worker.join(timeout=30)
    assert done.is_set() and not failures, failures
    assert PageFile.objects.count() == 1 and Page.objects.count() == 1



HOLD_A_CLAIM = """
import sys, time
import django
django.setup()
from ocr_app.claims import claimed
with claimed([sys.argv[1]]):
    print("claimed", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def test_on_sqlite_a_claim_holds_across_server_processes(settings):
    """`make serve` runs several gunicorn processes on SQLite: a claim taken in one makes the others wait."""
    import os
    import subprocess
    import sys

    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL claims are advisory locks, tested with the concurrency tests")
    content = hashlib.sha256(b"one page").hexdigest()
    database = Path(connection.settings_dict["NAME"])   # the other process's database: beside the test's
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ocr_project.settings", "MEDIA_ROOT": str(settings.MEDIA_ROOT),
           "OCR_VAR_DIR": str(database.parent)}
    env.pop("DATABASE_URL", None)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_A_CLAIM, content, "1.5"], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "claimed"
        began = time.monotonic()
        with claimed([content]):
            waited = time.monotonic() - began
    finally:
        holder.wait(30)
    assert waited > 1.0, f"took the claim after {waited:.2f} s while another process held it"
