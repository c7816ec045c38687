"""ONNX round trip: a Keras model exported with tf2onnx reads like Keras does."""

import numpy as np
import onnx
import pytest

from recognition.ctc import greedy_decode
from recognition.image import load_grey, preprocess
from recognition.metadata import ModelInfo
from recognition.recognizer import Recognizer
from recognition.text import logical_order
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
    recognizer = Recognizer(tiny_model, threads=1)
    assert recognizer.info.input_height == 32
    assert recognizer.output_name == recognizer.session.get_outputs()[0].name


def test_onnx_gives_the_same_answer_as_keras(tiny_model, tiny_run):
    from training.checkpoint import load_model

    model = load_model(tiny_run / "best.keras")
    recognizer = Recognizer(tiny_model, threads=1)
    texts = ["قال أبو محمد", "سنة 45", "وكان عالما فاضلا حسن الخط"]
    lines = [preprocess(load_grey(png_bytes(render_line(t))), recognizer.info.preprocess_config) for t in texts]
    results = recognizer.recognize_lines(lines)
    for line, result in zip(lines, results):
        width = -(-line.shape[1] // 4) * 4
        x = np.zeros((1, 32, width, 1), np.float32)
        x[0, :, : line.shape[1], 0] = line
        probs = model([x, np.array([line.shape[1]], np.int32)], training=False).numpy()[0, : -(-line.shape[1] // 4)]
        onnx_probs = recognizer.probabilities([line])[0]
        assert np.abs(probs - onnx_probs).max() < 1e-4
        keras_text = logical_order(recognizer.info.alphabet.decode(greedy_decode(probs).labels))
        assert result.text == keras_text
        assert len(result.characters) == len(result.text)
        assert 0.0 <= result.confidence <= 1.0


def test_batches_of_different_widths_match_single_lines(tiny_model):
    recognizer = Recognizer(tiny_model, threads=1, max_batch=4)
    texts = ["قال", "وفي هذه السنة خرج الأمير من بغداد", "سنة 12", "محمد بن علي", "ثم دخلت سنة"]
    lines = [recognizer.prepare(png_bytes(render_line(t))) for t in texts]
    batched = recognizer.recognize_lines(lines)
    single = [recognizer.recognize_lines([line])[0] for line in lines]
    assert [b.text for b in batched] == [s.text for s in single]
    for b, s in zip(batched, single):
        assert b.confidence == pytest.approx(s.confidence, abs=1e-4)


def test_line_narrower_than_the_stride_gets_one_frame(tiny_model):
    recognizer = Recognizer(tiny_model, threads=1)
    probs = recognizer.probabilities([np.zeros((32, 1), np.float32), np.zeros((32, 9), np.float32)])
    assert [p.shape[0] for p in probs] == [1, 3]  # ceil(width / stride 4)
    assert probs[0].shape[1] == recognizer.info.alphabet.num_classes
    # a blank line reads as nothing, with the blank as its most likely class
    assert recognizer.recognize_lines([np.zeros((32, 1), np.float32)])[0].text == ""


def test_warm_up_marks_ready(tiny_model):
    recognizer = Recognizer(tiny_model, threads=1)
    assert not recognizer.is_warm
    recognizer.warm_up()
    assert recognizer.is_warm
