"""The files that travel with a model file: which Keras checkpoint a model can be fine-tuned from.

Export writes ``NAME.onnx`` beside ``NAME.keras``; an int8 model (``NAME-int8.onnx``) shares its float
model's checkpoint. A model without one (an ensemble of ``training.ensemble``, an ONNX file registered
alone) reads lines like any other but cannot be fine-tuned: book adaptation refuses it when asked, not
after queueing a training that would fail.
"""

from __future__ import annotations

from pathlib import Path


def keras_twin_candidates(onnx_path: str | Path) -> list[Path]:
    onnx_path = Path(onnx_path)
    candidates = [onnx_path.with_suffix(".keras")]
    if onnx_path.stem.endswith("-int8"):
        candidates.append(onnx_path.with_name(onnx_path.stem[: -len("-int8")] + ".keras"))
    return candidates


def keras_twin(onnx_path: str | Path) -> Path | None:
    """The Keras checkpoint ``onnx_path`` was exported from, or None if there is none beside it."""
    return next((c for c in keras_twin_candidates(onnx_path) if c.exists()), None)
