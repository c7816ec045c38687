"""Tesseract's own page reading through its C API: line finding and page mode.

``lines`` runs its layout analysis alone (AnalyseLayout, no recognition) and
returns text-line boxes; ``read_page`` reads a whole page in page mode (psm 3).
"""

from __future__ import annotations

import ctypes

import numpy as np

from .tesseract import Tesseract

RIL_TEXTLINE = 2


class TesseractPage(Tesseract):
    def __init__(self, language: str = "ara", threads: int = 1):
        super().__init__(language, psm=3, threads=threads)
        lib = self.lib
        lib.TessBaseAPIAnalyseLayout.argtypes = [ctypes.c_void_p]
        lib.TessBaseAPIAnalyseLayout.restype = ctypes.c_void_p
        lib.TessPageIteratorBoundingBox.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.POINTER(ctypes.c_int)] * 4
        lib.TessPageIteratorNext.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.TessPageIteratorDelete.argtypes = [ctypes.c_void_p]

    def _set(self, grey: np.ndarray) -> np.ndarray:
        grey = np.ascontiguousarray(grey, dtype=np.uint8)
        h, w = grey.shape
        self.lib.TessBaseAPISetImage(self.api, grey.ctypes.data, w, h, 1, w)
        return grey

    def lines(self, grey: np.ndarray) -> list[tuple[int, int, int, int]]:
        keep = self._set(grey)  # noqa: F841 (the buffer must outlive the call)
        iterator = self.lib.TessBaseAPIAnalyseLayout(self.api)
        boxes = []
        if not iterator:
            return boxes
        values = [ctypes.c_int() for _ in range(4)]
        while True:
            if self.lib.TessPageIteratorBoundingBox(iterator, RIL_TEXTLINE, *[ctypes.byref(v) for v in values]):
                boxes.append(tuple(v.value for v in values))
            if not self.lib.TessPageIteratorNext(iterator, RIL_TEXTLINE):
                break
        self.lib.TessPageIteratorDelete(iterator)
        return boxes

    def read_page(self, grey: np.ndarray) -> str:
        return self.read(grey)
