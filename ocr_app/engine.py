"""The recognisers this process has loaded: a cache keyed by the model file's SHA-256.

Each worker process opens a model file once (a ``Recognizer`` is shared by
all its threads). Which version is active is the registry's business
(``ocr_app.registry``); this module only loads what it is given, so a request
that started with one version finishes on it even if another is activated
meanwhile.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings

from recognition import LineLimits, Recognizer

from .models import ModelVersion

log = logging.getLogger("ocr_app.engine")

_lock = threading.Lock()
_recognizers: dict[str, Recognizer] = {}


def recognizer_for(version: ModelVersion) -> Recognizer:
    """The loaded, warmed-up recogniser of ``version`` (loaded on first use)."""
    key = version.sha256
    recognizer = _recognizers.get(key)
    if recognizer is not None:
        return recognizer
    with _lock:
        recognizer = _recognizers.get(key)
        if recognizer is None:
            started = time.perf_counter()
            recognizer = Recognizer(version.file_path, threads=settings.OCR_THREADS,
                                    max_batch=settings.OCR_MODEL_BATCH,
                                    concurrency=settings.OCR_MODEL_CONCURRENCY,
                                    limits=LineLimits(max_width=settings.OCR_MAX_LINE_WIDTH,
                                                      min_height=settings.OCR_MIN_LINE_HEIGHT),
                                    max_pixels=settings.OCR_MAX_PIXELS,
                                    language_model=settings.OCR_LANGUAGE_MODEL or None)
            recognizer.warm_up()
            _recognizers[key] = recognizer
            log.info("loaded model %s %s from %s in %.0f ms%s", version.name, version.version,
                     version.path, 1000 * (time.perf_counter() - started),
                     f", decoding with {recognizer.decoder.lm.describe()}" if recognizer.decoder else "")
    return recognizer


def is_loaded(version: ModelVersion) -> bool:
    """Whether ``version`` is loaded and warm in this process."""
    recognizer = _recognizers.get(version.sha256)
    return recognizer is not None and recognizer.is_warm


def forget_loaded_models() -> None:
    """Drop every loaded recogniser (tests; model files replaced on disk)."""
    with _lock:
        _recognizers.clear()
