"""What a model file says about itself (ONNX ``metadata_props``).

A model is self-describing: the alphabet, the input height, the width stride,
the preprocessing and text conventions travel inside the ONNX file, so serving
never needs a side file and a retrained model with a new alphabet just works.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from .alphabet import Alphabet
from .calibration import ConfidenceCalibration
from .conventions import TranscriptionConventions
from .image import NORMALISATION, PreprocessConfig

TEXT_NORMALISATION = "nfc-fold-presentation-forms-drop-harakat-ascii-digits-v2"
REQUIRED_KEYS = ("alphabet", "input_height", "width_stride")
# A line model's input height: the shipped ones take 48. Beyond the bounds no model was ever trained, and a
# crafted height of 10^9 would have the first line (and the warm-up) allocate gigabytes.
MIN_INPUT_HEIGHT, MAX_INPUT_HEIGHT = 8, 512


class ModelMetadataError(ValueError):
    pass


@dataclass
class ModelInfo:
    alphabet: Alphabet
    input_height: int
    width_stride: int
    name: str = "unnamed"
    version: str = "0"
    mirror: bool = True
    normalisation: str = NORMALISATION
    text_normalisation: str = TEXT_NORMALISATION
    training_data: str = ""
    validation_cer: float | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig(height=self.input_height, mirror=self.mirror,
                                normalisation=self.normalisation)

    @property
    def calibration(self) -> ConfidenceCalibration | None:
        """The confidence calibration stored by ``training.calibrate``, if any."""
        return ConfidenceCalibration.from_props(self.extra)

    @property
    def conventions(self) -> TranscriptionConventions | None:
        """The book's transcription conventions an adapted model applies (``training.adapt``), if any."""
        return TranscriptionConventions.from_props(self.extra)

    def to_props(self) -> dict[str, str]:
        props = {
            "alphabet": self.alphabet.to_json(),
            "input_height": str(self.input_height),
            "width_stride": str(self.width_stride),
            "name": self.name,
            "version": self.version,
            "mirror": json.dumps(self.mirror),
            "normalisation": self.normalisation,
            "text_normalisation": self.text_normalisation,
            "training_data": self.training_data,
            "validation_cer": "" if self.validation_cer is None else f"{self.validation_cer:.6f}",
        }
        props.update(self.extra)
        return props

    @classmethod
    def from_props(cls, props: dict[str, str]) -> ModelInfo:
        missing = [k for k in REQUIRED_KEYS if k not in props]
        if missing:
            raise ModelMetadataError(f"model metadata lacks {', '.join(missing)}")
        if props.get("normalisation", NORMALISATION) != NORMALISATION:
            raise ModelMetadataError(
                f"model expects preprocessing {props['normalisation']!r}; this code provides {NORMALISATION!r}"
            )
        known = {f for f in cls.__dataclass_fields__} - {"extra", "alphabet"}
        cer = props.get("validation_cer", "")
        try:
            info = cls(
                alphabet=Alphabet.from_json(props["alphabet"]),
                input_height=int(props["input_height"]),
                width_stride=int(props["width_stride"]),
                name=props.get("name", "unnamed"),
                version=props.get("version", "0"),
                mirror=json.loads(props.get("mirror", "true")),
                normalisation=props.get("normalisation", NORMALISATION),
                text_normalisation=props.get("text_normalisation", TEXT_NORMALISATION),
                training_data=props.get("training_data", ""),
                validation_cer=float(cer) if cer else None,
                extra={k: v for k, v in props.items() if k not in known and k != "alphabet"},
            )
        except (ValueError, TypeError) as exc:   # a number or a JSON value that is not one
            raise ModelMetadataError(f"unreadable model metadata: {exc}") from None
        info.check()
        return info

    def check(self) -> None:
        """Refuse what no line could be read with, at load rather than on a user's first line: a height or
        stride out of range, an empty alphabet, a calibration or conventions entry that does not parse."""
        if not MIN_INPUT_HEIGHT <= self.input_height <= MAX_INPUT_HEIGHT:
            raise ModelMetadataError(f"input_height {self.input_height} is outside {MIN_INPUT_HEIGHT}-"
                                     f"{MAX_INPUT_HEIGHT} pixels")
        if self.width_stride < 1:
            raise ModelMetadataError(f"width_stride {self.width_stride} must be at least 1")
        if len(self.alphabet) == 0:
            raise ModelMetadataError("the alphabet is empty")
        # float() takes "inf", "nan" and "1e999": a registry listing such a CER cannot be written as JSON
        if self.validation_cer is not None and not (math.isfinite(self.validation_cer) and self.validation_cer >= 0):
            raise ModelMetadataError(f"validation_cer {self.validation_cer} is not a CER (a finite share from 0)")
        try:
            self.calibration, self.conventions  # noqa: B018 (parsed for their errors)
        except ValueError as exc:
            raise ModelMetadataError(str(exc)) from None

    def summary(self) -> dict:
        """JSON-friendly description (for APIs and model cards)."""
        data = asdict(self)
        data["alphabet"] = "".join(self.alphabet.characters)
        data["alphabet_size"] = len(self.alphabet)
        return data
