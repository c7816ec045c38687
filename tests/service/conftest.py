from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.rendering import png_bytes, render_line
from tests.service.celery_workers import broker_queue, start_worker  # noqa: F401 (fixtures for the worker tests)

SHIPPED_MODEL = Path(django_settings.OCR_DEFAULT_MODEL)


@pytest.fixture(scope="session")
def model_file(request) -> Path:
    """The shipped model when it is there (it is, on main), else the tiny trained one."""
    if SHIPPED_MODEL.exists():
        return SHIPPED_MODEL
    return request.getfixturevalue("tiny_model")


@pytest.fixture(autouse=True)
def service_settings(settings, tmp_path, model_file):
    from django.core.cache import cache

    from ocr_app import registry

    settings.MEDIA_ROOT = tmp_path / "media"
    settings.OCR_DEFAULT_MODEL = model_file
    settings.OCR_REFERENCE_SET = ""
    cache.clear()
    registry.forget_active_version()  # the database is new for every test
    yield settings
    registry.forget_active_version()


@pytest.fixture(autouse=True)
def started(request, service_settings):
    """What a serving process does at start-up (ocr_app.startup): register the default model."""
    from ocr_app.registry import register_default_model

    if request.node.get_closest_marker("django_db") is not None:
        request.getfixturevalue("db")  # the test's own database mode (its marker) applies
        register_default_model()
    elif "transactional_db" in request.fixturenames:  # e.g. the browser tests, through their fixtures
        request.getfixturevalue("transactional_db")
        register_default_model()


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("reader", password="pw-reader-1")


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("other", password="pw-other-1")


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("reviewer", password="pw-reviewer-1")


def _with_review_permission(person):
    from django.contrib.auth.models import Permission

    person.user_permissions.add(Permission.objects.get(codename="review_recognitions"))
    return person


@pytest.fixture
def reviewer(django_user_model):
    """Not staff: a user given the reviewer permission."""
    return _with_review_permission(django_user_model.objects.create_user("nadia", password="pw-nadia-1"))


@pytest.fixture
def second_reviewer(django_user_model):
    return _with_review_permission(django_user_model.objects.create_user("omar", password="pw-omar-1"))


def _client_for(user):
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


@pytest.fixture
def api(user):
    return _client_for(user)


@pytest.fixture
def other_api(other_user):
    return _client_for(other_user)


@pytest.fixture
def staff_api(staff):
    return _client_for(staff)


@pytest.fixture(scope="session")
def line_png() -> bytes:
    return png_bytes(render_line("قال أبو محمد سنة 45"))


def media_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
