"""Line recognition with an ONNX model through onnxruntime."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np
import onnxruntime as ort

from .ctc import LineResult, decode_line
from .image import load_grey, preprocess
from .metadata import ModelInfo


class OnnxRecognizer:
    """Opens an ONNX line model once and recognises batches of line images.

    One instance is safe to share between threads: onnxruntime's ``run`` is
    thread-safe and nothing here mutates state after construction.
    """

    def __init__(self, model_path: str | os.PathLike, threads: int | None = None,
                 max_batch: int = 16, concurrency: int | None = None):
        self.path = os.fspath(model_path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(self.path, sess_options=options,
                                            providers=["CPUExecutionProvider"])
        self.info = ModelInfo.from_props(self.session.get_modelmeta().custom_metadata_map)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.max_batch = max_batch
        # Optional cap on simultaneous model runs: in a server, runs beyond the
        # cores only add memory (one batch of activations each), not speed.
        self._slots = threading.BoundedSemaphore(concurrency) if concurrency else None
        self._warm = threading.Event()

    @property
    def is_warm(self) -> bool:
        return self._warm.is_set()

    def warm_up(self) -> None:
        """Run once so that the first real request does not pay graph setup."""
        blank = np.zeros((self.info.input_height, self.info.input_height * 8), np.float32)
        self.recognize_arrays([blank])
        self._warm.set()

    # -- inputs ---------------------------------------------------------------

    def prepare(self, source) -> np.ndarray:
        """A path, bytes or file -> preprocessed model input (may raise ImageError)."""
        return preprocess(load_grey(source), self.info.preprocess_config)

    def recognize(self, sources: Sequence) -> list[LineResult]:
        return self.recognize_arrays([self.prepare(s) for s in sources])

    def recognize_one(self, source) -> LineResult:
        return self.recognize([source])[0]

    # -- model ----------------------------------------------------------------

    def probabilities(self, lines: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-line (frames x classes) softmax outputs, padding frames removed.

        Lines are sorted by width and batched so that each batch pads little;
        widths are rounded up to the model's stride so every frame is whole.
        """
        stride = self.info.width_stride
        results: list[np.ndarray | None] = [None] * len(lines)
        order = sorted(range(len(lines)), key=lambda i: lines[i].shape[1])
        for start in range(0, len(order), self.max_batch):
            chunk = order[start: start + self.max_batch]
            widest = max(lines[i].shape[1] for i in chunk)
            padded_width = max(stride, -(-widest // stride) * stride)
            batch = np.zeros((len(chunk), self.info.input_height, padded_width, 1), np.float32)
            for row, i in enumerate(chunk):
                batch[row, :, : lines[i].shape[1], 0] = lines[i]
            if self._slots is None:
                probs = self.session.run([self.output_name], {self.input_name: batch})[0]
            else:
                with self._slots:
                    probs = self.session.run([self.output_name], {self.input_name: batch})[0]
            for row, i in enumerate(chunk):
                frames = -(-lines[i].shape[1] // stride)
                results[i] = probs[row, :frames]
        return results  # type: ignore[return-value]

    def recognize_arrays(self, lines: Sequence[np.ndarray]) -> list[LineResult]:
        return [self.decode(p) for p in self.probabilities(lines)]

    def decode(self, probs: np.ndarray) -> LineResult:
        return decode_line(probs, self.info.alphabet, self.info.mirror)
