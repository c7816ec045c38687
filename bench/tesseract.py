"""Tesseract 5 through its C API (ctypes), so timings exclude process start-up.

``tesseract IMG stdout`` pays ~100 ms of process start and model loading per
call, which would flatter us unfairly; the C API loads ``ara`` once and then
times recognition alone, as our recogniser is timed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

import numpy as np


class TesseractUnavailable(RuntimeError):
    pass


def _library():
    name = ctypes.util.find_library("tesseract") or "libtesseract.so.5"
    try:
        lib = ctypes.CDLL(name)
    except OSError as exc:
        raise TesseractUnavailable(f"libtesseract not found ({exc}); apt-get install tesseract-ocr-ara") from None
    lib.TessBaseAPICreate.restype = ctypes.c_void_p
    lib.TessBaseAPIInit3.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.TessBaseAPISetPageSegMode.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.TessBaseAPISetImage.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                                        ctypes.c_int, ctypes.c_int]
    lib.TessBaseAPIGetUTF8Text.argtypes = [ctypes.c_void_p]
    lib.TessBaseAPIGetUTF8Text.restype = ctypes.c_void_p
    lib.TessDeleteText.argtypes = [ctypes.c_void_p]
    lib.TessBaseAPIDelete.argtypes = [ctypes.c_void_p]
    lib.TessVersion.restype = ctypes.c_char_p
    return lib


class Tesseract:
    """One Tesseract engine with a language loaded, reading single lines (psm 13: raw line)."""

    def __init__(self, language: str = "ara", psm: int = 13, threads: int = 1):
        os.environ["OMP_THREAD_LIMIT"] = str(threads)  # read when the library starts its thread pool
        self.lib = _library()
        self.api = self.lib.TessBaseAPICreate()
        if self.lib.TessBaseAPIInit3(self.api, None, language.encode()) != 0:
            raise TesseractUnavailable(f"Tesseract has no '{language}' model; apt-get install tesseract-ocr-{language}")
        self.lib.TessBaseAPISetPageSegMode(self.api, psm)
        self.version = self.lib.TessVersion().decode()

    def read(self, grey: np.ndarray) -> str:
        grey = np.ascontiguousarray(grey, dtype=np.uint8)
        h, w = grey.shape
        self.lib.TessBaseAPISetImage(self.api, grey.ctypes.data, w, h, 1, w)
        pointer = self.lib.TessBaseAPIGetUTF8Text(self.api)
        if not pointer:
            return ""
        text = ctypes.string_at(pointer).decode("utf-8", errors="replace")
        self.lib.TessDeleteText(pointer)
        return " ".join(text.split())

    def close(self) -> None:
        if self.api:
            self.lib.TessBaseAPIDelete(self.api)
            self.api = None
