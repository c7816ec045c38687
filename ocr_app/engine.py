"""The recognisers this process holds, and which one is active.

Each worker process opens a model file once (an ``OnnxRecognizer`` is shared by
all its threads) and asks the database at most every
``OCR_ACTIVE_MODEL_CHECK_SECONDS`` which version is active. Activating another
version therefore reaches every worker within seconds, without a restart; a
request already running keeps the recogniser it started with, so it finishes
on the old model.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from django.conf import settings

from recognition.onnx_recognizer import OnnxRecognizer

from .models import ModelVersion

log = logging.getLogger("ocr_app.engine")

_lock = threading.RLock()
_recognizers: dict[str, OnnxRecognizer] = {}
_active: dict = {"version": None, "checked": 0.0}


class NoModelError(RuntimeError):
    pass


def model_path(version: ModelVersion) -> Path:
    path = Path(version.path)
    return path if path.is_absolute() else Path(settings.BASE_DIR) / path


def recognizer_for(version: ModelVersion) -> OnnxRecognizer:
    """The loaded, warmed-up recogniser of ``version`` (loaded on first use)."""
    key = version.sha256
    recognizer = _recognizers.get(key)
    if recognizer is not None:
        return recognizer
    with _lock:
        recognizer = _recognizers.get(key)
        if recognizer is None:
            started = time.perf_counter()
            recognizer = OnnxRecognizer(model_path(version), threads=settings.OCR_THREADS,
                                        max_batch=settings.OCR_MODEL_BATCH,
                                        concurrency=settings.OCR_MODEL_CONCURRENCY)
            recognizer.warm_up()
            _recognizers[key] = recognizer
            log.info("loaded model %s %s from %s in %.0f ms", version.name, version.version,
                     version.path, 1000 * (time.perf_counter() - started))
    return recognizer


def active_version(refresh: bool = False) -> ModelVersion:
    """The active model version, re-read from the database every few seconds.

    With no model registered yet, the shipped default model is registered and
    activated, so a fresh install serves without a manual step.
    """
    now = time.monotonic()
    cached = _active["version"]
    if cached is not None and not refresh and now - _active["checked"] < settings.OCR_ACTIVE_MODEL_CHECK_SECONDS:
        return cached
    version = ModelVersion.objects.filter(is_active=True).first()
    if version is None:
        version = _register_default()
    if cached is None or cached.pk != version.pk:
        log.info("active model is now %s %s", version.name, version.version)
    _active.update(version=version, checked=now)
    return version


def _register_default() -> ModelVersion:
    from .registry import register_model

    path = Path(settings.OCR_DEFAULT_MODEL)
    if not path.exists():
        raise NoModelError(f"no model is registered and the default model {path} does not exist")
    return register_model(path, activate=True, check_quality=False)


def active_recognizer() -> tuple[ModelVersion, OnnxRecognizer]:
    version = active_version()
    return version, recognizer_for(version)


def is_ready() -> bool:
    version = _active["version"]
    if version is None:
        return False
    recognizer = _recognizers.get(version.sha256)
    return recognizer is not None and recognizer.is_warm


def warm_up_active() -> None:
    """Load and warm the active model now (called at worker start)."""
    try:
        active_recognizer()
    except Exception:  # the worker still serves /healthz and reports not ready
        log.exception("could not load the active model")


def forget_loaded_models() -> None:
    """Drop every loaded recogniser (tests; model files replaced on disk)."""
    with _lock:
        _recognizers.clear()
        _active.update(version=None, checked=0.0)
