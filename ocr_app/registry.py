"""The model lifecycle: registering model files, activating one, and which one is active.

Workers ask the database at most every ``OCR_ACTIVE_MODEL_CHECK_SECONDS``
which version is active (``active_version``), so activating another version
reaches every worker within seconds without a restart. The shipped default
model is registered at start-up (``register_default_model``), never as a side
effect of a request. Loading the files is ``ocr_app.engine``'s job.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from recognition.hashing import file_sha256
from recognition.metadata import ModelInfo, ModelMetadataError

from .models import ModelVersion

log = logging.getLogger("ocr_app.registry")


class RegistryError(ValueError):
    pass


class NoActiveModelError(RuntimeError):
    """No model version is active (the default model could not be registered at start-up)."""


_active_lock = threading.Lock()
_active: dict = {"version": None, "checked": 0.0}


@dataclass
class QualityComparison:
    candidate_cer: float
    active_cer: float | None
    lines: int

    @property
    def acceptable(self) -> bool:
        return self.active_cer is None or self.candidate_cer <= self.active_cer

    def describe(self) -> str:
        active = "n/a" if self.active_cer is None else f"{100 * self.active_cer:.2f}%"
        return (f"reference set ({self.lines} lines): candidate CER {100 * self.candidate_cer:.2f}%, "
                f"active CER {active}")


def read_model_info(path: Path) -> ModelInfo:
    """What the model file says about itself, once it has read a line: a file that opens but whose metadata
    no line can be read with (a height the graph does not take, a zero stride, a calibration that does not
    parse) is refused here, not registered to answer 500 to whoever names it."""
    from recognition import Recognizer

    try:
        recognizer = Recognizer(path, threads=1)
        recognizer.warm_up()
        return recognizer.info
    except ModelMetadataError as exc:
        raise RegistryError(f"{path}: {exc}") from None
    except Exception as exc:  # onnxruntime raises its own types for unreadable files and failed runs
        raise RegistryError(f"{path} is not a loadable ONNX line model: {exc}") from None


def _stored_path(path: Path) -> str:
    path = path.resolve()
    try:
        return str(path.relative_to(Path(settings.BASE_DIR).resolve()))
    except ValueError:
        return str(path)


def reference_cer(path: Path, reference_dir: str) -> tuple[float, int]:
    """CER of the model at ``path`` on the reference line folder (or manifest)."""
    from recognition.line_data import SkipReport, iter_samples
    from recognition.recognizer import Recognizer

    evaluation = Recognizer(path).evaluate(iter_samples([reference_dir], SkipReport()))
    if not evaluation.lines:
        raise RegistryError(f"the reference set {reference_dir} has no lines")
    return evaluation.cer, evaluation.lines


def compare_with_active(path: Path, reference_dir: str) -> QualityComparison:
    candidate, lines = reference_cer(path, reference_dir)
    active = ModelVersion.objects.filter(is_active=True).first()
    active_cer = reference_cer(active.file_path, reference_dir)[0] if active else None
    return QualityComparison(candidate, active_cer, lines)


def _check_name_and_version(name: str, version: str) -> None:
    """What requests choose a model by (``name``, ``version``, ``name:version``) and the columns hold: a crafted
    file's ':' could never be chosen, and a NUL or an over-long name failed in the database with a traceback."""
    for field, value in (("name", name), ("version", version)):
        limit = ModelVersion._meta.get_field(field).max_length
        # control characters (NUL above all) and lone surrogates no database column takes; format characters
        # (ZWNJ, RLM) and NBSP may well be part of an Arabic name
        if not value or len(value) > limit or ":" in value or any(
                unicodedata.category(c) in ("Cc", "Cs") for c in value):
            raise RegistryError(f"the model's {field} {value[:60]!r} must be 1 to {limit} characters, without ':' "
                                "(requests choose a model as name:version) or control characters")


def register_model(path: Path | str, activate: bool = False, force: bool = False,
                   check_quality: bool = True, reference_dir: str | None = None,
                   report=lambda message: None) -> ModelVersion:
    """Register an ONNX file (idempotent by name+version) and optionally activate it.

    Activation is refused when the candidate's CER on the reference set is worse
    than the active model's, unless ``force``.
    """
    path = Path(path)
    if not path.exists():
        raise RegistryError(f"no such model file: {path}")
    info = read_model_info(path)
    _check_name_and_version(info.name, info.version)
    sha = file_sha256(path)
    existing = ModelVersion.objects.filter(name=info.name, version=info.version).first()
    if existing and existing.sha256 != sha:
        raise RegistryError(f"{info.name} {info.version} is already registered with different contents; "
                            "export the new model with a new --version")
    if existing is None:
        try:
            with transaction.atomic():
                version = ModelVersion.objects.create(
                    name=info.name, version=info.version, path=_stored_path(path), sha256=sha,
                    metadata=info.to_props(), validation_cer=info.validation_cer,
                )
        except IntegrityError:  # another worker registered it at the same moment (first start)
            existing = version = ModelVersion.objects.get(name=info.name, version=info.version)
    else:
        version = existing
    if existing:
        report(f"{info.name} {info.version} was already registered")
    else:
        report(f"registered {info.name} {info.version} ({path})")
    if activate and not version.is_active:
        reference_dir = reference_dir if reference_dir is not None else settings.OCR_REFERENCE_SET
        if check_quality and reference_dir and ModelVersion.objects.filter(is_active=True).exists():
            comparison = compare_with_active(path, reference_dir)
            report(comparison.describe())
            version.reference_cer = comparison.candidate_cer
            version.save(update_fields=["reference_cer"])
            if not comparison.acceptable and not force:
                raise RegistryError(f"not activated: the candidate is worse than the active model "
                                    f"({comparison.describe()}); use --force to activate anyway")
        activate_version(version)
        report(f"activated {info.name} {info.version}")
    return version


@transaction.atomic
def activate_version(version: ModelVersion, tries: int = 5) -> None:
    """Make ``version`` the one active model. Two activations at once (two admins, a script) are settled by
    the last: on PostgreSQL the second one's deactivation does not see the first one's model, not committed when
    it started, and the one-active-model constraint refuses it; tried again, it sees it."""
    for attempt in range(tries):
        try:
            with transaction.atomic():   # a savepoint: the refused try is undone alone
                ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
                version.is_active = True
                version.activated_at = timezone.now()
                version.save(update_fields=["is_active", "activated_at"])
            return
        except IntegrityError:
            if attempt == tries - 1:
                raise


def register_default_model() -> ModelVersion | None:
    """At start-up: with no active model, register and activate the shipped default.

    Several workers may start at once; the database's one-active-model
    constraint lets one activation win and the others read it back.
    """
    active = ModelVersion.objects.filter(is_active=True).first()
    if active is not None:
        return active
    path = Path(settings.OCR_DEFAULT_MODEL)
    if not path.exists():
        log.error("no model is active and the default model %s does not exist", path)
        return None
    try:
        return register_model(path, activate=True, check_quality=False)
    except IntegrityError:  # another worker activated a model at the same moment
        return ModelVersion.objects.filter(is_active=True).first()


def active_version(refresh: bool = False) -> ModelVersion:
    """The active model version, re-read from the database every few seconds."""
    now = time.monotonic()
    cached = _active["version"]
    if cached is not None and not refresh and now - _active["checked"] < settings.OCR_ACTIVE_MODEL_CHECK_SECONDS:
        return cached
    version = ModelVersion.objects.filter(is_active=True).first()
    if version is None:
        raise NoActiveModelError("no model is active; register one with manage.py register_model FILE --activate")
    with _active_lock:
        if cached is None or cached.pk != version.pk:
            log.info("active model is now %s %s", version.name, version.version)
        _active.update(version=version, checked=now)
    return version


def find_version(name_or_version: str) -> ModelVersion | None:
    """The registered model named ``name``, ``version`` or ``name:version`` (the active one first)."""
    name, _, version = name_or_version.partition(":")
    models = ModelVersion.objects.filter(book__isnull=True)   # a book's adapted model is for that book only
    query = models.filter(name=name, version=version) if version else (
        models.filter(version=name) | models.filter(name=name))
    return query.order_by("-is_active", "-registered_at").first()


def forget_active_version() -> None:
    """Make the next ``active_version`` call read the database (tests: a new database)."""
    with _active_lock:
        _active.update(version=None, checked=0.0)
