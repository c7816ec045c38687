"""training.ensemble: shipped models merged into one file that reads with both and averages them."""

import json
from pathlib import Path

import numpy as np
import pytest

from recognition import Recognizer
from recognition.hashing import file_sha256
from tests.rendering import render_line
from training import ensemble
from training.export import parity_lines_from

MODELS = Path(__file__).resolve().parent.parent / "models"
V2, SWIFT = MODELS / "arabic-crnn-v2.onnx", MODELS / "arabic-crnn-swift.onnx"
TEXTS = ["قال أبو محمد: هذا كتاب", "في سنة ١٢٣ للهجرة", "«المعاني» والأسماء"]


@pytest.fixture(scope="module")
def merged(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ensemble") / "pair.onnx"
    assert ensemble.main([str(V2), str(SWIFT), "--out", str(out), "--name", "pair", "--version", "0.1"]) == 0
    return out


@pytest.fixture(scope="module")
def lines() -> list[np.ndarray]:
    reader = Recognizer(V2, threads=1)
    return [reader.prepare(render_line(text)) for text in TEXTS]


def test_its_output_is_the_mean_of_its_members(merged, lines):
    members = [Recognizer(p, threads=1).probabilities(lines) for p in (V2, SWIFT)]
    got = Recognizer(merged, threads=1).probabilities(lines)
    for i, probs in enumerate(got):
        expected = (members[0][i] + members[1][i]) / 2
        assert probs.shape == expected.shape
        np.testing.assert_allclose(probs, expected, atol=1e-6)
        np.testing.assert_allclose(probs.sum(axis=-1), 1.0, atol=1e-4)  # still a distribution per frame


def test_it_reads_a_line_alone_as_in_a_batch(merged, lines):
    reader = Recognizer(merged, threads=1)
    assert reader.batches_lines  # members that mask their padding make an ensemble that does
    together = reader.probabilities(lines)
    for line, probs in zip(lines, together):
        np.testing.assert_allclose(reader.probabilities([line])[0], probs, atol=1e-5)
    assert any(len(r.text) > 5 for r in reader.recognize_lines(lines))


def test_it_describes_itself_and_its_members(merged):
    info = Recognizer(merged, threads=1).info
    v2 = Recognizer(V2, threads=1).info
    assert (info.name, info.version) == ("pair", "0.1")
    assert info.alphabet == v2.alphabet and info.input_height == v2.input_height
    members = json.loads(info.extra["ensemble"])
    assert [m["file"] for m in members] == [V2.name, SWIFT.name]
    assert members[0]["sha256"] == file_sha256(V2)
    # One run's facts (epoch, machine, layout) are each member's, not the merged file's.
    assert members[0]["training_machine"] == v2.extra["training_machine"]
    assert members[1]["architecture"] == Recognizer(SWIFT, threads=1).info.extra["architecture"]
    assert "training_machine" not in info.extra and "architecture" not in info.extra  # v2 and swift differ
    assert int(info.extra["parameters"]) == int(v2.extra["parameters"]) + int(members[1]["parameters"])
    assert info.calibration is None  # a member's fit is not the mean's: training.calibrate the result
    assert info.validation_cer is None
    assert info.extra["batch_independent"] == "true"
    sidecar = json.loads(merged.with_suffix(".json").read_text(encoding="utf-8"))
    assert sidecar["name"] == "pair"


def test_models_that_cut_frames_differently_are_refused(tiny_model, tmp_path, capsys):
    out = tmp_path / "bad.onnx"
    assert ensemble.main([str(V2), str(tiny_model), "--out", str(out), "--name", "bad"]) == 2
    assert "input_height" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing half-written


def test_one_model_is_not_an_ensemble(tmp_path, capsys):
    assert ensemble.main([str(V2), "--out", str(tmp_path / "one.onnx"), "--name", "one"]) == 2
    assert "at least two" in capsys.readouterr().err


def test_a_quantized_member_or_a_file_that_is_no_model_is_refused(tmp_path, capsys):
    out = tmp_path / "bad.onnx"
    assert ensemble.main([str(MODELS / "arabic-crnn-v2-int8.onnx"), str(SWIFT), "--out", str(out), "--name", "b"]) == 2
    assert "quantized" in capsys.readouterr().err
    assert ensemble.main([str(V2.with_suffix(".json")), str(SWIFT), "--out", str(out), "--name", "b"]) == 2
    assert "not an ONNX model" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_a_merged_graph_that_is_not_the_mean_is_not_written(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ensemble, "AGREEMENT_TOLERANCE", -1.0)  # no graph can pass: the failure path
    out = tmp_path / "never.onnx"
    assert ensemble.main([str(V2), str(SWIFT), "--out", str(out), "--name", "never"]) == 2
    assert "differs from the members' mean" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_int8_needs_real_lines_to_be_compared_on(tmp_path):
    with pytest.raises(SystemExit):
        ensemble.main([str(V2), str(SWIFT), "--out", str(tmp_path / "x.onnx"), "--name", "x",
                       "--int8", str(tmp_path / "x-int8.onnx")])


def test_the_check_lines_compare_the_merged_graph_with_the_members(tiny_model, tiny_arrays, tmp_path):
    out = tmp_path / "twice.onnx"
    assert ensemble.main([str(tiny_model), str(tiny_model), "--out", str(out), "--name", "twice",
                          "--check-lines", str(tiny_arrays), "--check-count", "3",
                          "--int8", str(tmp_path / "twice-int8.onnx")]) == 0
    assert Recognizer(tmp_path / "twice-int8.onnx", threads=1).info.extra["quantization"]
    # A model averaged with itself reads exactly as it does alone.
    alone, twice = Recognizer(tiny_model, threads=1), Recognizer(out, threads=1)
    sample = parity_lines_from([str(tiny_arrays)], 3)
    for a, b in zip(alone.probabilities(sample), twice.probabilities(sample)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_its_model_card_lists_the_members(merged, tmp_path):
    from training import model_card

    card = model_card.build(merged, tmp_path / "CARD.md")
    assert "an **ensemble** of 2 models" in card
    assert f"`{V2.name}`" in card and f"`{SWIFT.name}`" in card
    assert "carries no calibration" in card
