"""Framework-free Arabic line recognition core.

Imported by training (Keras), export, evaluation, benchmarks and the Django
service alike; it depends on NumPy, OpenCV, Pillow and (for ``onnx_recognizer``)
onnxruntime, never on Django or TensorFlow.
"""

from .alphabet import BLANK_INDEX, Alphabet, UnknownCharacterError
from .image import ImageError, PreprocessConfig, load_grey, preprocess
from .text import normalize_text, reading_order

__all__ = [
    "BLANK_INDEX",
    "Alphabet",
    "UnknownCharacterError",
    "ImageError",
    "PreprocessConfig",
    "load_grey",
    "preprocess",
    "normalize_text",
    "reading_order",
]
