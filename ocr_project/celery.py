"""The Celery application: ``celery -A ocr_project worker`` (see ``make worker``).

Configured from Django settings (``CELERY_*``). Each worker process loads and
warms the active model once, when it starts, not per task.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ocr_project.settings")

app = Celery("ocr_project")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["ocr_app.jobs", "ocr_app.books"])


@worker_process_init.connect
def _load_model(**_kwargs) -> None:
    from django.db import connection

    from ocr_app.startup import load_active_model, start_serving_process

    start_serving_process(warm_up=False)   # registers the shipped model if none is active
    load_active_model()
    connection.close()   # opened before the first task; the task opens its own when it needs one
