"""The recognisers this process has loaded: a cache keyed by the model file's SHA-256.

Each worker process opens a model file once (a ``Recognizer`` is shared by
all its threads). Which version is active is the registry's business
(``ocr_app.registry``); this module only loads what it is given, so a request
that started with one version finishes on it even if another is activated
meanwhile.

The character language model (``OCR_LANGUAGE_MODEL``, optional) is loaded once
per process and shared by every model's beam search; a file that cannot be
used is refused once and remembered: requests answer 503
``language_model_unavailable`` with its reason, /readyz says it, and nothing
is loaded again until the process restarts (after the setting is fixed).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from django.conf import settings
from rest_framework import status

from recognition import LineLimits, Recognizer
from recognition.char_lm import CharacterLanguageModel, LanguageModelError
from recognition.hashing import file_sha256

from .errors import ApiError
from .models import ModelVersion

log = logging.getLogger("ocr_app.engine")

_lock = threading.Lock()
_recognizers: dict[str, Recognizer] = {}
# The language model file named by the setting, and what loading it gave: the model, or why it cannot be used.
_language_model: tuple[str, CharacterLanguageModel | str] | None = None
# Model versions (by hash) that the language model does not suit (another text convention): why.
_unsuited: dict[str, str] = {}


def language_model_unavailable(reason: str) -> ApiError:
    return ApiError("language_model_unavailable", f"the language model (OCR_LANGUAGE_MODEL) cannot be used: {reason}",
                    status.HTTP_503_SERVICE_UNAVAILABLE)


def model_unavailable(version: ModelVersion, exc: Exception) -> ApiError:
    return ApiError("model_unavailable", f"model {version.name} {version.version} is registered but cannot be "
                                         f"used ({type(exc).__name__}); choose another or ask an administrator",
                    status.HTTP_503_SERVICE_UNAVAILABLE)


def check_model_file(version: ModelVersion) -> None:
    """The file must still be the one registered: the cache, the stored predictions' model version and the
    registry's checks all stand for those bytes, and a file replaced on disk (by another model, or a crafted
    one) would otherwise be served under the registered name unchecked."""
    try:
        found = file_sha256(version.file_path)
    except OSError as exc:
        raise model_unavailable(version, exc) from None
    if found != version.sha256:
        log.error("model %s %s: %s changed since it was registered (SHA-256 %s, registered %s)", version.name,
                  version.version, version.path, found[:12], version.sha256[:12])
        raise ApiError("model_unavailable", f"model {version.name} {version.version} is registered but its file has "
                                            "changed since; choose another or ask an administrator to register it "
                                            "again", status.HTTP_503_SERVICE_UNAVAILABLE)


def language_model_path() -> Path | None:
    """The file ``OCR_LANGUAGE_MODEL`` names (a relative path is taken from the project folder), or None."""
    value = str(settings.OCR_LANGUAGE_MODEL or "").strip()
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else Path(settings.BASE_DIR) / path


def language_model() -> CharacterLanguageModel | None:
    """The language model decoding uses (None: greedy decoding), loaded on first use; raises ``ApiError``
    (503 ``language_model_unavailable``) when the file cannot be used, without trying it again."""
    global _language_model
    path = language_model_path()
    if path is None:
        return None
    loaded = _language_model
    if loaded is None or loaded[0] != str(path):
        with _lock:
            loaded = _language_model
            if loaded is None or loaded[0] != str(path):
                try:
                    loaded = (str(path), CharacterLanguageModel.load(path))
                    log.info("OCR_LANGUAGE_MODEL: decoding with %s from %s", loaded[1].describe(), path)
                except LanguageModelError as exc:
                    loaded = (str(path), str(exc))
                    log.error("OCR_LANGUAGE_MODEL cannot be used (lines cannot be read until it is fixed and "
                              "the service restarted): %s", exc)
                _language_model = loaded
    if isinstance(loaded[1], str):
        raise language_model_unavailable(loaded[1])
    return loaded[1]


def unsuited(version: ModelVersion) -> str | None:
    """Why the language model cannot decode ``version``'s output (another text convention), if it was found so."""
    reason = _unsuited.get(version.sha256)
    return language_model_unavailable(reason).message if reason else None


def language_model_problem() -> str | None:
    """Why the configured language model cannot be used, or None (none configured, or it loads)."""
    try:
        language_model()
    except ApiError as exc:
        return exc.message
    return None


def recognizer_for(version: ModelVersion) -> Recognizer:
    """The loaded, warmed-up recogniser of ``version`` (loaded on first use)."""
    key = version.sha256
    recognizer = _recognizers.get(key)
    if recognizer is not None:
        return recognizer
    lm = language_model()  # before the lock: it takes it itself
    with _lock:
        recognizer = _recognizers.get(key)
        if recognizer is None:
            if key in _unsuited:
                raise language_model_unavailable(_unsuited[key])
            started = time.perf_counter()
            check_model_file(version)
            try:
                recognizer = Recognizer(version.file_path, threads=settings.OCR_THREADS,
                                        max_batch=settings.OCR_MODEL_BATCH,
                                        concurrency=settings.OCR_MODEL_CONCURRENCY,
                                        limits=LineLimits(max_width=settings.OCR_MAX_LINE_WIDTH,
                                                          min_height=settings.OCR_MIN_LINE_HEIGHT),
                                        max_pixels=settings.OCR_MAX_PIXELS, language_model=lm)
            except LanguageModelError as exc:  # it does not suit this model (another text convention)
                _unsuited[key] = f"{language_model_path()}: {exc}"
                log.error("OCR_LANGUAGE_MODEL does not suit model %s %s: %s", version.name, version.version, exc)
                raise language_model_unavailable(_unsuited[key]) from None
            except Exception as exc:  # its file gone or changed, or registered before the registry checked
                log.exception("model %s %s (%s) cannot be loaded", version.name, version.version, version.path)
                raise model_unavailable(version, exc) from None
            try:
                recognizer.warm_up()
            except Exception as exc:
                log.exception("model %s %s (%s) cannot read a line", version.name, version.version, version.path)
                raise model_unavailable(version, exc) from None
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
    global _language_model
    with _lock:
        _recognizers.clear()
        _unsuited.clear()
        _language_model = None
