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

