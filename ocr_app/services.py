"""Recognising uploads and storing what was recognised.

Every input is validated and decoded before anything is written, so a
rejected request leaves no record and no file behind.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import IntegrityError, transaction
from django.utils import timezone
from PIL import Image

from recognition.ctc import LineResult
from recognition.image import ImageError, load_grey, preprocess

from . import engine
from .errors import ApiError
from .models import ModelVersion, Recognition, StoredImage

log = logging.getLogger("ocr_app.services")

_EXTENSIONS = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp", "WEBP": ".webp", "GIF": ".gif"}


@dataclass
class DecodedUpload:
    name: str
    data: bytes
    sha256: str
    grey: object  # numpy array
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


def decode_upload(name: str, data: bytes) -> DecodedUpload:
    if len(data) > settings.OCR_MAX_UPLOAD_BYTES:
        raise ApiError("file_too_large", f"the file is {len(data)} bytes; the limit is {settings.OCR_MAX_UPLOAD_BYTES}",
                       413)
    try:
        grey = load_grey(data, max_pixels=settings.OCR_MAX_PIXELS)
    except ImageError as exc:
        raise ApiError(exc.code, exc.message, 413 if exc.code == "image_too_large" else 400) from None
    fmt = Image.open(io.BytesIO(data)).format or ""
    return DecodedUpload(name, data, hashlib.sha256(data).hexdigest(), grey, _EXTENSIONS.get(fmt, ".img"))


def choose_model(name_or_version: str | None) -> ModelVersion:
    """The active model, or the registered one named ``name``, ``version`` or ``name:version``."""
    if not name_or_version:
        return engine.active_version()
    name, _, version = name_or_version.partition(":")
    query = ModelVersion.objects.filter(name=name, version=version) if version else (
        ModelVersion.objects.filter(version=name) | ModelVersion.objects.filter(name=name))
    found = query.order_by("-is_active", "-registered_at").first()
    if found is None:
        raise ApiError("unknown_model", f"no registered model {name_or_version!r}; see GET /api/v1/models/", 400)
    return found


def _cached(image: StoredImage, version: ModelVersion, user) -> Recognition | None:
    """An earlier recognition of the same image by the same model: the user's own first."""
    same = (Recognition.objects.select_related("image", "model_version")
            .filter(image=image, model_version=version).order_by("-created_at"))
    own = same.filter(user=user).first() if getattr(user, "pk", None) else None
    return own or same.first()


def _store_image(upload: DecodedUpload) -> tuple[StoredImage, str | None]:
    """Store a new image; return it and the file name this call wrote (None if it lost a race)."""
    height, width = upload.grey.shape
    image = StoredImage(sha256=upload.sha256, extension=upload.extension, width=width, height=height,
                        size_bytes=len(upload.data))
    image.file.save(f"{upload.sha256}{upload.extension}", ContentFile(upload.data), save=False)
    written = image.file.name
    try:
        with transaction.atomic():
            image.save()
    except IntegrityError:  # another request stored the same content just now
        image.file.storage.delete(written)
        return StoredImage.objects.get(sha256=upload.sha256), None
    return image, written


def _save(upload: DecodedUpload, image: StoredImage | None, version: ModelVersion, user,
          result: LineResult | None, duration_ms: float, source: Recognition | None) -> Recognition:
    """Store one recognition; if the database refuses it, no new file stays behind."""
    written = None
    try:
        with transaction.atomic():
            if image is None:
                image, written = _store_image(upload)
            if source is not None:
                fields = dict(text=source.text, confidence=source.confidence, characters=source.characters,
                              cached=True)
            else:
                fields = dict(text=result.text, confidence=result.confidence,
                              characters=[{"char": c.char, "confidence": c.confidence} for c in result.characters])
            return Recognition.objects.create(image=image, model_version=version, user=user,
                                              duration_ms=duration_ms, **fields)
    except Exception:
        if written:
            from django.core.files.storage import default_storage

            default_storage.delete(written)
        raise


def recognize_uploads(user, uploads: list[DecodedUpload], model: str | None = None) -> list[Recognition]:
    """Recognise decoded uploads in one model call; reuse stored results when we can."""
    version = choose_model(model)
    results: list[Recognition | None] = [None] * len(uploads)
    images = {im.sha256: im for im in StoredImage.objects.filter(sha256__in={u.sha256 for u in uploads})}
    to_run: list[int] = []
    for i, upload in enumerate(uploads):
        image = images.get(upload.sha256)
        previous = _cached(image, version, user) if image is not None else None  # new content: no lookups
        if previous is not None and previous.user_id == getattr(user, "pk", None):
            previous.cached = previous.reused = True  # in the answer only; the row stays as it was
            results[i] = previous
        elif previous is not None:
            results[i] = _save(upload, image, version, user, None, 0.0, previous)
        else:
            to_run.append(i)
    if to_run:
        recognizer = engine.recognizer_for(version)
        started = time.perf_counter()
        lines = [preprocess(uploads[i].grey, recognizer.info.preprocess_config) for i in to_run]
        line_results = recognizer.recognize_arrays(lines)
        duration_ms = 1000 * (time.perf_counter() - started) / len(to_run)
        for i, line_result in zip(to_run, line_results):
            recognition = _save(uploads[i], images.get(uploads[i].sha256), version, user, line_result,
                                round(duration_ms, 2), None)
            images[uploads[i].sha256] = recognition.image  # the same content twice in one batch
            results[i] = recognition
    return results  # type: ignore[return-value]


def recognize_one(user, name: str, data: bytes, model: str | None = None) -> Recognition:
    return recognize_uploads(user, [decode_upload(name, data)], model)[0]


def review(recognition: Recognition, reviewer, corrected_text: str | None = None) -> Recognition:
    """Mark a prediction correct, or store the reviewer's corrected text."""
    from recognition.text import normalize_text

    text = normalize_text(corrected_text or "", keep_harakat=True) if corrected_text is not None else None
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
    active = engine.active_version()
    uploads = []
    for recognition in recognitions:
        if recognition.model_version_id == active.pk:
            continue
        with recognition.image.file.open("rb") as f:
            uploads.append(decode_upload(recognition.image.file.name, f.read()))
    return recognize_uploads(user, uploads) if uploads else []
