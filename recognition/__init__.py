"""Framework-free Arabic line recognition core.

    from recognition import Recognizer
    recognizer = Recognizer("models/arabic-crnn-v2-int8.onnx")
    results = recognizer.recognize(["line.png"])   # a LineResult or a LineError per image

Imported by training (Keras), export, evaluation, benchmarks, the CLI and the
Django service alike; it depends on NumPy, OpenCV, Pillow, python-bidi,
rapidfuzz and (for the ``Recognizer``) onnxruntime, never on Django or
TensorFlow. ``Recognizer`` and its result types are imported on first use, so
``import recognition`` for text or alphabet work does not load onnxruntime.
"""

from .alphabet import BLANK_INDEX, Alphabet, UnknownCharacterError
from .ctc import CharacterResult, LineResult
from .image import ImageError, LineLimits, PreprocessConfig, load_grey, preprocess
from .text import logical_order, normalize_text, reading_order

__all__ = [
    "BLANK_INDEX",
    "Alphabet",
    "UnknownCharacterError",
    "CharacterResult",
    "LineResult",
    "ImageError",
    "LineLimits",
    "PreprocessConfig",
    "load_grey",
    "preprocess",
    "logical_order",
    "normalize_text",
    "reading_order",
    "Recognizer",
    "LineError",
]

_LAZY = {"Recognizer": "recognizer", "LineError": "recognizer"}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
