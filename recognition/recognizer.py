"""The recognition entry point: a model file in, one result or one error per line image out.

    from recognition import Recognizer
    recognizer = Recognizer("models/arabic-crnn-v2-int8.onnx")
    for outcome in recognizer.recognize(["line1.png", open("line2.png", "rb").read()]):
        print(outcome.text if isinstance(outcome, LineResult) else outcome.code)

Everything that reads lines (the service, the CLI, evaluation, the registry's
quality gate, benchmarks, export's int8 check) goes through ``Recognizer``: it
owns loading, preprocessing, bounding the input, batching and decoding.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from .beam_search import BeamSearchSettings, CTCBeamSearch
from .char_lm import CharacterLanguageModel
from .ctc import LineResult, decode_line
from .evaluation import Evaluation
from .image import DEFAULT_MAX_PIXELS, ImageError, LineLimits, check_grey_array, load_grey, preprocess
from .line_data import LineSample
from .metadata import ModelInfo, ModelMetadataError

# The input through which a model is told each line's true width (model pixels),
# so that the zero padding of a batch is invisible to it (masked convolutions,
# LSTM sequence_lens). Models exported before it have only the image input.
WIDTHS_INPUT = "widths"


@dataclass(frozen=True)
class LineError:
    """Why one input could not be read; ``code`` is stable, for programs and APIs."""

    code: str
    message: str


def read_model_info(model_path: str | os.PathLike) -> ModelInfo:
    """What a model file says about itself (alphabet, text convention, ...), without a ``Recognizer``."""
    session = ort.InferenceSession(os.fspath(model_path), providers=["CPUExecutionProvider"])
    return ModelInfo.from_props(session.get_modelmeta().custom_metadata_map)


def check_input_height(session: ort.InferenceSession, input_name: str, info: ModelInfo) -> None:
    """The metadata's ``input_height`` must be the height the graph takes (NHWC) where the graph fixes one:
    lines scaled to any other height fail in onnxruntime, on every line."""
    shape = next(i.shape for i in session.get_inputs() if i.name == input_name)
    if len(shape) == 4 and isinstance(shape[1], int) and shape[1] != info.input_height:
        raise ModelMetadataError(f"the metadata says input_height {info.input_height}; the graph takes lines "
                                 f"{shape[1]} pixels high")


def check_output_classes(session: ort.InferenceSession, output_name: str, info: ModelInfo) -> None:
    """The metadata's alphabet must be the one the graph's softmax is over (its characters and the blank) where
    the graph fixes its width: with fewer characters a label past the alphabet's end fails every line that
    emits it, and with more every label reads as some other character."""
    shape = next(o.shape for o in session.get_outputs() if o.name == output_name)
    if shape and isinstance(shape[-1], int) and shape[-1] != info.alphabet.num_classes:
        raise ModelMetadataError(f"the metadata's alphabet has {len(info.alphabet)} characters (with the blank "
                                 f"{info.alphabet.num_classes} classes); the graph outputs {shape[-1]} classes")


class Recognizer:
    """Opens an ONNX line model once and recognises line images.

    Inputs may be paths, bytes, binary file objects or 2-D uint8 grey arrays.
    A line's result does not depend on what else is recognised with it: a
    batch-independent model with a ``widths`` input is fed each line's true
    width; any other model runs each line on its own. One instance is safe to share between threads
    (onnxruntime's ``run`` is thread-safe and nothing here changes after
    construction). Decoding is greedy unless ``language_model`` (a
    ``CharacterLanguageModel`` or its file) or ``beam_search`` settings ask for
    the beam search (``recognition.beam_search``).
    """

    def __init__(self, model_path: str | os.PathLike, threads: int | None = None, max_batch: int = 16,
                 concurrency: int | None = None, limits: LineLimits = LineLimits(),
                 max_pixels: int = DEFAULT_MAX_PIXELS, apply_conventions: bool = True,
                 language_model: CharacterLanguageModel | str | os.PathLike | None = None,
                 beam_search: BeamSearchSettings | None = None):
        self.path = os.fspath(model_path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # A memory pattern is planned and kept per set of input shapes, and lines come in every width:
        # without it a line runs 1-3% faster (the same outputs; bench/README.md, "The line path").
        options.enable_mem_pattern = False
        self.session = ort.InferenceSession(self.path, sess_options=options, providers=["CPUExecutionProvider"])
        self.info = ModelInfo.from_props(self.session.get_modelmeta().custom_metadata_map)
        self.calibration = self.info.calibration  # the model's own confidence calibration, if it has one
        # Its book's spacing around punctuation (adapted models); ``apply_conventions=False`` reads as the
        # network does, for measuring it on other books' transcriptions (the adaptation gate's forgetting check).
        self.conventions = self.info.conventions if apply_conventions else None
        # Greedy decoding unless asked: a language model (a loaded one or its file) or beam settings
        # turn on the beam search (``recognition.beam_search``); a bad LM file fails here, not per line.
        self.decoder: CTCBeamSearch | None = None
        if language_model is not None or beam_search is not None:
            if language_model is not None and not isinstance(language_model, CharacterLanguageModel):
                language_model = CharacterLanguageModel.load(language_model)
            self.decoder = CTCBeamSearch(self.info.alphabet, language_model, beam_search or BeamSearchSettings(),
                                         text_normalisation=self.info.text_normalisation)
        inputs = [i.name for i in self.session.get_inputs()]
        self.input_name = next(name for name in inputs if name != WIDTHS_INPUT)
        check_input_height(self.session, self.input_name, self.info)
        self.takes_widths = WIDTHS_INPUT in inputs
        # Batching needs a model that masks its padding *and* computes each line on
        # its own: a dynamically quantised model scales its activations by the
        # range of the whole run, so it says batch_independent=false and runs per line.
        self.batches_lines = self.takes_widths and self.info.extra.get("batch_independent") == "true"
        self.output_name = self.session.get_outputs()[0].name
        check_output_classes(self.session, self.output_name, self.info)
        self.max_batch = max_batch
        self.limits = limits
        self.max_pixels = max_pixels
        # Optional cap on simultaneous model runs: in a server, runs beyond the
        # cores only add memory (one batch of activations each), not speed.
        self._slots = threading.BoundedSemaphore(concurrency) if concurrency else None
        self._warm = threading.Event()

    @property
    def is_warm(self) -> bool:
        return self._warm.is_set()

    def warm_up(self) -> None:
        """Run once so that the first real request does not pay graph setup."""
        self.recognize_lines([np.zeros((self.info.input_height, self.info.input_height * 8), np.float32)])
        self._warm.set()

    # -- line images ----------------------------------------------------------

    def prepare(self, source) -> np.ndarray:
        """A path, bytes, file or 2-D uint8 grey array -> the model's input for it (raises ``ImageError``;
        an array of another type or shape is ``unsupported_array``)."""
        config = self.info.preprocess_config
        if isinstance(source, np.ndarray):
            grey = check_grey_array(source)
        else:
            def check_size(width: int, height: int) -> None:
                self.limits.check_size(width, height, config.height)

            grey = load_grey(source, max_pixels=self.max_pixels, check_size=check_size)
        return preprocess(grey, config, self.limits)

    def recognize(self, sources: Iterable) -> list[LineResult | LineError]:
        """One ``LineResult`` or ``LineError`` per source, in order; a bad image fails only itself."""
        outcomes: list[LineResult | LineError | None] = []
        lines, positions = [], []
        for source in sources:
            try:
                lines.append(self.prepare(source))
                positions.append(len(outcomes))
                outcomes.append(None)
            except ImageError as exc:
                outcomes.append(LineError(exc.code, exc.message))
        for position, result in zip(positions, self.recognize_lines(lines)):
            outcomes[position] = result
        return outcomes  # type: ignore[return-value]

    def recognize_one(self, source) -> LineResult:
        """One line image -> its result; raises ``ImageError`` if it cannot be read."""
        return self.recognize_lines([self.prepare(source)])[0]

    def evaluate(self, samples: Iterable[LineSample], chunk: int = 64) -> Evaluation:
        """Read ``samples`` and score them: CER and WER per source and overall.

        An unreadable image counts as an empty reading (every character missed).
        """
        evaluation = Evaluation()
        batch: list[LineSample] = []
        for sample in samples:
            batch.append(sample)
            if len(batch) == chunk:
                evaluation.add(batch, self.recognize([s.image_path for s in batch]))
                batch = []
        if batch:
            evaluation.add(batch, self.recognize([s.image_path for s in batch]))
        return evaluation

    # -- model inputs (preprocessed lines) --------------------------------------

    def recognize_lines(self, lines: Sequence[np.ndarray]) -> list[LineResult]:
        """Preprocessed lines (``prepare``'s output, or stored training arrays) -> results."""
        return [decode_line(p, self.info.alphabet, self.info.mirror, self.calibration, self.conventions, self.decoder)
                for p in self.probabilities(lines)]

    def probabilities(self, lines: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per-line (frames x classes) softmax outputs: the line's own frames only.

        A line of width w owns the first ceil(w / stride) frames. With a
        ``widths`` input and a model that says it is batch independent, lines
        of similar width are batched (sorted, so that little is padding);
        otherwise each line runs alone, padded only to a whole stride, because
        an older model reads the padding of a batch (its backward LSTM starts
        in it) and a dynamically quantised one scales activations per run.
        """
        stride = self.info.width_stride
        results: list[np.ndarray | None] = [None] * len(lines)
        order = sorted(range(len(lines)), key=lambda i: lines[i].shape[1])
        batch_size = self.max_batch if self.batches_lines else 1
        for start in range(0, len(order), batch_size):
            chunk = order[start: start + batch_size]
            widest = max(lines[i].shape[1] for i in chunk)
            padded_width = max(stride, -(-widest // stride) * stride)
            batch = np.zeros((len(chunk), self.info.input_height, padded_width, 1), np.float32)
            for row, i in enumerate(chunk):
                batch[row, :, : lines[i].shape[1], 0] = lines[i]
            feed = {self.input_name: batch}
            if self.takes_widths:
                feed[WIDTHS_INPUT] = np.array([lines[i].shape[1] for i in chunk], np.int32)
            probs = self._run(feed)
            for row, i in enumerate(chunk):
                results[i] = probs[row, : -(-lines[i].shape[1] // stride)]
        return results  # type: ignore[return-value]

    def _run(self, feed: dict) -> np.ndarray:
        if self._slots is None:
            return self.session.run([self.output_name], feed)[0]
        with self._slots:
            return self.session.run([self.output_name], feed)[0]
