"""Recognising uploads and storing what was recognised.

Every input is validated and decoded before anything is written, so a
rejected request leaves no record and no file behind.
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone

from recognition import LineError, LineResult
from recognition.image_file import FORMAT_SUFFIXES, ImageError, open_image

from . import engine, registry
from .claims import claimed
from .errors import ApiError
from .models import ModelVersion, Recognition, StoredImage, image_path

log = logging.getLogger("ocr_app.services")



@dataclass
class DecodedUpload:
    name: str
    data: bytes
    sha256: str
    width: int
    height: int
    extension: str


def decode_base64_image(value: str) -> bytes:
    """Base64 or a ``data:image/...;base64,`` URL -> bytes."""
    if not isinstance(value, str) or not value.strip():
        raise ApiError("missing_image", "'image' must be a non-empty base64 string or data URL")
    if value.startswith("data:"):
        header, _, value = value.partition(",")
        if ";base64" not in header:
            raise ApiError("invalid_base64", "only base64 data URLs are accepted")
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("invalid_base64", "'image' is not valid base64") from None


def image_error(code: str, message: str) -> ApiError:
    """The recogniser's error for one image, as the API answers it (all 4xx)."""
    return ApiError(code, message, 413 if code == "image_too_large" else 400)


def decode_upload(name: str, data: bytes) -> DecodedUpload:
    """Size, hash and header of an upload; its pixels are decoded by the recogniser."""
    if len(data) > settings.OCR_MAX_UPLOAD_BYTES:
        raise ApiError("file_too_large", f"the file is {len(data)} bytes; the limit is {settings.OCR_MAX_UPLOAD_BYTES}",
                       413)
    try:
        with open_image(data, max_pixels=settings.OCR_MAX_PIXELS) as header:   # reads the header only
            width, height = header.size
            extension = FORMAT_SUFFIXES.get(header.format or "", ".img")
    except ImageError as exc:
        raise image_error(exc.code, exc.message) from None
    return DecodedUpload(name, data, hashlib.sha256(data).hexdigest(), width, height, extension)


def choose_model(name_or_version: str | None) -> ModelVersion:
    """The active model, or the registered one named ``name``, ``version`` or ``name:version``."""
    if not name_or_version:
        try:
            return registry.active_version()
        except registry.NoActiveModelError as exc:
            raise ApiError("no_active_model", str(exc), 503) from None
    found = registry.find_version(name_or_version)
    if found is None:
        raise ApiError("unknown_model", f"no registered model {name_or_version!r}; see GET /api/v1/models/", 400)
    return found


def _own_recognitions(hashes: set[str], version: ModelVersion, user) -> dict[str, Recognition]:
    """The user's stored recognitions of these contents by this model (one each: a unique constraint)."""
    if not hashes or user is None:
        return {}
    found = (Recognition.objects.select_related("image", "model_version")
             .filter(image__sha256__in=hashes, model_version=version, user=user))
    return {r.image.sha256: r for r in found}


def _someone_elses(image: StoredImage, version: ModelVersion) -> Recognition | None:
    """Another user's recognition of the same content by the same model, to copy instead of running it."""
    return Recognition.objects.filter(image=image, model_version=version).order_by("id").first()


def _image_path_for(upload: DecodedUpload) -> str:
    return image_path(upload.sha256, upload.extension)


def _store_image(upload: DecodedUpload) -> StoredImage:
    """The stored image of this content, creating it if needed.

    The file is written before the row is committed, at a name that is exactly
    the content's hash: a worker killed in between leaves a file that the next
    upload of the same content adopts (``check_storage --fix`` removes it
    otherwise), and a second writer of the same content rewrites the same bytes.
    """
    existing = StoredImage.objects.filter(sha256=upload.sha256).first()
    if existing is not None:
        return existing
    image = StoredImage(sha256=upload.sha256, extension=upload.extension, width=upload.width, height=upload.height,
                        size_bytes=len(upload.data))
    image.file.save(_image_path_for(upload), ContentFile(upload.data), save=False)
    try:
        with transaction.atomic():
            image.save()
    except IntegrityError:  # another process stored the same content just now: same name, same bytes
        return StoredImage.objects.get(sha256=upload.sha256)
    return image


def _save(upload: DecodedUpload, version: ModelVersion, user, fields: dict) -> Recognition:
    """Store one recognition; a concurrent one for the same content, model and user wins (and is returned)."""
    try:
        with transaction.atomic():
            image = _store_image(upload)
            return Recognition.objects.create(image=image, model_version=version, user=user, **fields)
    except IntegrityError:
        # On SQLite another worker process may have stored it first (claims there are per process).
        existing = _own_recognitions({upload.sha256}, version, user).get(upload.sha256)
        if existing is None:
            raise
        existing.reused = True
        return existing
    except Exception:
        _delete_unreferenced_file(upload)
        raise


def _delete_unreferenced_file(upload: DecodedUpload) -> None:
    """After a failed save: no file without a row (safe, the caller holds the content's claim)."""
    if not StoredImage.objects.filter(sha256=upload.sha256).exists():
        from django.core.files.storage import default_storage

        default_storage.delete(_image_path_for(upload))


def _fields_from_result(result: LineResult, duration_ms: float) -> dict:
    return dict(text=result.text, confidence=result.confidence, duration_ms=duration_ms,
                characters=[{"char": c.char, "confidence": c.confidence} for c in result.characters])


def _fields_copied_from(source: Recognition) -> dict:
    # The copy carries the original run's duration: a user must not learn from the answer
    # that someone else sent the same image first (``cached`` stays internal to the row).
    return dict(text=source.text, confidence=source.confidence, characters=source.characters,
                duration_ms=source.duration_ms, cached=True)


def _recognize_new(uploads: dict[str, DecodedUpload], version: ModelVersion,
                   user) -> dict[str, Recognition | ApiError]:
    """Recognitions (or the error that image alone failed with) for contents the user has none of yet;
    the caller holds the claims on them."""
    done: dict[str, Recognition | ApiError] = dict(_own_recognitions(set(uploads), version, user))
    for recognition in done.values():
        recognition.reused = True
    to_run: list[str] = []
    for sha, upload in uploads.items():
        if sha in done:
            continue
        image = StoredImage.objects.filter(sha256=sha).first()
        source = _someone_elses(image, version) if image is not None else None
        if source is not None:
            done[sha] = _save(upload, version, user, _fields_copied_from(source))
        else:
            to_run.append(sha)
    if to_run:
        recognizer = engine.recognizer_for(version)
        started = time.perf_counter()
        outcomes = recognizer.recognize([uploads[sha].data for sha in to_run])
        duration_ms = round(1000 * (time.perf_counter() - started) / len(to_run), 2)
        for sha, outcome in zip(to_run, outcomes):
            if isinstance(outcome, LineError):  # nothing is stored for an image that cannot be read
                done[sha] = image_error(outcome.code, outcome.message)
            else:
                done[sha] = _save(uploads[sha], version, user, _fields_from_result(outcome, duration_ms))
    return done


def recognize_uploads(user, uploads: list[DecodedUpload],
                      model: str | None = None) -> list[Recognition | ApiError]:
    """Recognise decoded uploads in one model call; each content at most once per model and user.

    Returns a stored recognition, or the error that image alone failed with
    (nothing is stored for it), per upload.

    A content the user already sent comes back as their stored recognition
    (``reused``: 200, ``cached: true``); the same content twice in one batch
    runs once. Another user's stored result may be copied instead of running
    the model, but the answer looks like a fresh one.
    """
    version = choose_model(model)
    user = user if getattr(user, "pk", None) else None
    distinct = {u.sha256: u for u in uploads}
    by_hash: dict[str, Recognition | ApiError] = dict(_own_recognitions(set(distinct), version, user))
    for recognition in by_hash.values():
        recognition.reused = True
    missing = {sha: u for sha, u in distinct.items() if sha not in by_hash}
    if missing:
        with claimed(missing):
            by_hash.update(_recognize_new(missing, version, user))
    results, answered = [], set()
    for upload in uploads:
        recognition = by_hash[upload.sha256]
        if upload.sha256 in answered and isinstance(recognition, Recognition):  # the same content again in this batch: the first one's result
            recognition = copy.copy(recognition)
            recognition.reused = True
        answered.add(upload.sha256)
        results.append(recognition)
    return results


def recognize_one(user, name: str, data: bytes, model: str | None = None) -> Recognition:
    outcome = recognize_uploads(user, [decode_upload(name, data)], model)[0]
    if isinstance(outcome, ApiError):
        raise outcome
    return outcome


class ReviewError(ApiError):
    """A reviewer's text that cannot be stored as what a line says (400, with a code the review page explains)."""

    def __init__(self, code: str, message: str):
        super().__init__(code, message)


def normalized_review_text(text: str) -> str:
    """A reviewer's text as it will be stored (the one normalisation, harakat kept)."""
    from recognition.text import normalize_text

    return normalize_text(text, keep_harakat=True).strip()


def has_visible_text(text: str) -> bool:
    """At least one character that is not a mark (harakat alone), a space or a control."""
    import unicodedata

    return any(unicodedata.category(c)[0] not in "MZC" for c in text)


def checked_review_text(text: str) -> str:
    """The reviewer's text as it will be stored, or ``ReviewError`` saying why it cannot be.

    Refused: a text with nothing visible once normalised (bidi marks or harakat alone); control characters
    and lone surrogates (PostgreSQL refuses NUL, and a line's text is written out one line per file for
    training); and a text longer than the widest line the service reads has pixel columns
    (``OCR_MAX_LINE_WIDTH`` at the model's height): greedy CTC emits at most one character per column.
    """
    import unicodedata

    text = normalized_review_text(text)
    for position, char in enumerate(text):
        if unicodedata.category(char) in ("Cc", "Cs"):
            raise ReviewError("invalid_text", f"the text holds a control character (U+{ord(char):04X}) at "
                                              f"position {position}; type only what the line says")
    if not has_visible_text(text):
        raise ReviewError("empty_text", "the corrected text is empty once normalised (only spaces, marks or "
                                        "invisible characters); type what the line says, or skip it")
    if len(text) > settings.OCR_MAX_LINE_WIDTH:
        raise ReviewError("text_too_long", f"the text is {len(text)} characters long; no line the service reads "
                                           f"can hold more than {settings.OCR_MAX_LINE_WIDTH}")
    return text


def review(recognition: Recognition, reviewer, corrected_text: str | None = None) -> Recognition:
    """Mark a prediction correct (no text given: an explicit verification), or store the reviewer's text.

    A text that cannot be a line's reading is refused (``checked_review_text``).
    """
    text = checked_review_text(corrected_text) if corrected_text is not None else None
    if text is None or text == recognition.text:
        recognition.status = Recognition.Status.VERIFIED
        recognition.corrected_text = ""
    else:
        recognition.status = Recognition.Status.CORRECTED
        recognition.corrected_text = text
    recognition.reviewed_by = reviewer
    recognition.reviewed_at = timezone.now()
    recognition.save(update_fields=["status", "corrected_text", "reviewed_by", "reviewed_at"])
    return recognition


def rerun_on_active_model(recognitions: list[Recognition], user) -> list[Recognition]:
    """Recognise the images of ``recognitions`` again with the active model (for comparing models)."""
    active = choose_model(None)
    uploads = []
    for recognition in recognitions:
        if recognition.model_version_id == active.pk:
            continue
        with recognition.image.file.open("rb") as f:
            uploads.append(decode_upload(recognition.image.file.name, f.read()))
    return recognize_uploads(user, uploads) if uploads else []
