"""ONNX round trip: a Keras model exported with tf2onnx reads like Keras does."""

import numpy as np
import onnx
import pytest

from recognition.ctc import greedy_decode
from recognition.image import load_grey, preprocess
from recognition.metadata import ModelInfo
from recognition.onnx_recognizer import OnnxRecognizer
from recognition.text import reading_order
from tests.rendering import png_bytes, render_line

pytestmark = pytest.mark.slow


def test_metadata_travels_inside_the_onnx_file(tiny_model, tiny_run):
    props = {p.key: p.value for p in onnx.load(str(tiny_model)).metadata_props}
    info = ModelInfo.from_props(props)
    assert info.input_height == 32 and info.width_stride == 4
    assert info.name == "tiny-test" and info.version == "1"
    assert "ا" in info.alphabet and info.validation_cer is not None
    for key in ("normalisation", "text_normalisation", "training_data", "architecture", "parameters"):
        assert props[key]


def test_recognizer_reads_metadata_and_output_name_from_the_session(tiny_model):
    recognizer = OnnxRecognizer(tiny_model, threads=1)
    assert recognizer.info.input_height == 32
    assert recognizer.output_name == recognizer.session.get_outputs()[0].name


def test_onnx_gives_the_same_answer_as_keras(tiny_model, tiny_run):
    import keras

    model = keras.models.load_model(tiny_run / "best.keras", compile=False)
    recognizer = OnnxRecognizer(tiny_model, threads=1)
    texts = ["قال أبو محمد", "سنة 45", "وكان عالما فاضلا حسن الخط"]
    lines = [preprocess(load_grey(png_bytes(render_line(t))), recognizer.info.preprocess_config) for t in texts]
    results = recognizer.recognize_arrays(lines)
    for line, result in zip(lines, results):
        width = -(-line.shape[1] // 4) * 4
        x = np.zeros((1, 32, width, 1), np.float32)
        x[0, :, : line.shape[1], 0] = line
        probs = model(x, training=False).numpy()[0, : -(-line.shape[1] // 4)]
        onnx_probs = recognizer.probabilities([line])[0]
        assert np.abs(probs - onnx_probs).max() < 1e-4
        keras_text = reading_order(recognizer.info.alphabet.decode(greedy_decode(probs).labels))
        assert result.text == keras_text
        assert len(result.characters) == len(result.text)
        assert 0.0 <= result.confidence <= 1.0


def test_batches_of_different_widths_match_single_lines(tiny_model):
    recognizer = OnnxRecognizer(tiny_model, threads=1, max_batch=4)
    texts = ["قال", "وفي هذه السنة خرج الأمير من بغداد", "سنة 12", "محمد بن علي", "ثم دخلت سنة"]
    lines = [recognizer.prepare(png_bytes(render_line(t))) for t in texts]
    batched = recognizer.recognize_arrays(lines)
    single = [recognizer.recognize_arrays([line])[0] for line in lines]
    assert [b.text for b in batched] == [s.text for s in single]


def test_narrow_line_narrower_than_the_stride_is_padded(tiny_model):
    recognizer = OnnxRecognizer(tiny_model, threads=1)
    result = recognizer.recognize_arrays([np.zeros((32, 1), np.float32)])[0]
    assert isinstance(result.text, str)


def test_warm_up_marks_ready(tiny_model):
    recognizer = OnnxRecognizer(tiny_model, threads=1)
    assert not recognizer.is_warm
    recognizer.warm_up()
    assert recognizer.is_warm
