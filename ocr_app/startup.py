"""What a serving process does once, when it starts."""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import DatabaseError, connection

from . import engine, registry
from .errors import ApiError
from .pages.services import forget_pages_of_dead_requests
from .storage import sweep_abandoned

log = logging.getLogger("ocr_app.startup")


def load_active_model() -> bool:
    """Load and warm the active model in this process; False (logged) when that is not possible."""
    try:
        engine.recognizer_for(registry.active_version())
        return True
    except ApiError:  # the language model cannot be used: logged once by the engine, said by /readyz
        return False
    except Exception:  # the worker still serves /healthz and reports not ready
        log.exception("could not load the active model")
        return False


def _load_in_background() -> None:
    try:
        load_active_model()
    finally:
        connection.close()  # this thread's own connection: do not leave it open for good


def start_serving_process(warm_up: bool = True) -> None:
    """Clean up after workers that died (their unfinished uploads, the pages their requests were reading),
    register the shipped model if none is active, then warm the active one in the background.

    Registering is quick (metadata and a hash) and done before the first
    request, so no request has to do it; loading the model takes longer and
    /readyz reports it.
    """
    # A bad OCR_LANGUAGE_MODEL is said once, now, in the log (the engine's error line), not first by a request.
    engine.language_model_problem()
    removed = sweep_abandoned(settings.MEDIA_ROOT)
    if removed:
        log.info("removed %d unfinished uploads of workers that died", removed)
    try:
        # POST /api/v1/pages/ requests killed while they read their page (each page logged by ocr_app.pages);
        # a page that another worker's live request is reading stays
        forget_pages_of_dead_requests()
    except Exception:  # not migrated yet, storage failing: a clean-up must never stop the server from starting
        log.exception("could not forget the pages of requests whose worker died")
    try:
        registry.register_default_model()
    except DatabaseError:  # not migrated yet: requests will say so, /readyz too
        log.exception("could not register the default model")
    if warm_up:
        threading.Thread(target=_load_in_background, name="model-warm-up", daemon=True).start()
