"""Registering model files and choosing the active one."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from recognition.metadata import ModelInfo, ModelMetadataError

from .models import ModelVersion

log = logging.getLogger("ocr_app.registry")


class RegistryError(ValueError):
    pass


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


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_model_info(path: Path) -> ModelInfo:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return ModelInfo.from_props(session.get_modelmeta().custom_metadata_map)
    except ModelMetadataError as exc:
        raise RegistryError(f"{path}: {exc}") from None
    except Exception as exc:  # onnxruntime raises its own types for unreadable files
        raise RegistryError(f"{path} is not a loadable ONNX model: {exc}") from None


def _stored_path(path: Path) -> str:
    path = path.resolve()
    try:
        return str(path.relative_to(Path(settings.BASE_DIR).resolve()))
    except ValueError:
        return str(path)


def reference_cer(path: Path, reference_dir: str) -> tuple[float, int]:
    """CER of the model at ``path`` on the reference line folder."""
    from recognition.image import ImageError
    from recognition.metrics import ErrorCounter
    from recognition.onnx_recognizer import OnnxRecognizer
    from recognition.text import normalize_text

    recognizer = OnnxRecognizer(path)
    counter = ErrorCounter()
    for gt in sorted(Path(reference_dir).rglob("*.gt.txt")):
        stem = gt.name[: -len(".gt.txt")]
        image = next((p for p in gt.parent.glob(stem + ".*") if not p.name.endswith(".txt")), None)
        if image is None:
            continue
        try:
            hyp = recognizer.recognize_one(image).text
        except ImageError:
            hyp = ""
        counter.add(normalize_text(gt.read_text(encoding="utf-8")), hyp)
    if not counter.lines:
        raise RegistryError(f"the reference set {reference_dir} has no lines")
    return counter.cer, counter.lines


def compare_with_active(path: Path, reference_dir: str) -> QualityComparison:
    from .engine import model_path

    candidate, lines = reference_cer(path, reference_dir)
    active = ModelVersion.objects.filter(is_active=True).first()
    active_cer = reference_cer(model_path(active), reference_dir)[0] if active else None
    return QualityComparison(candidate, active_cer, lines)


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
def activate_version(version: ModelVersion) -> None:
    ModelVersion.objects.filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
    version.is_active = True
    version.activated_at = timezone.now()
    version.save(update_fields=["is_active", "activated_at"])
