"""Confidences that point at errors: the calibration maps, their fitting, the shipped model's own."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from recognition.calibration import (
    METADATA_KEY,
    CalibrationError,
    ConfidenceCalibration,
    MonotoneMap,
    best_error_share,
    error_share_of_lowest,
    expected_calibration_error,
    fit_logistic_map,
    fit_monotone_map,
)
from recognition.ctc import decode_line, greedy_decode
from recognition.recognizer import Recognizer
from tests.conftest import short_lines, write_line_folder
from tests.rendering import png_bytes, render_line
from training.calibrate import outcome

SHIPPED_INT8 = Path(__file__).resolve().parent.parent / "models" / "arabic-crnn-v1-int8.onnx"


def test_a_map_interpolates_as_np_interp_does_on_its_knots_bit_for_bit():
    """The map keeps its knots as arrays; the numbers are np.interp's on the stored tuples, every bit."""
    m = MonotoneMap((0.1, 0.444757, 0.549754, 0.9), (0.02, 0.31, 0.5, 0.97))
    raw = np.random.default_rng(0).random(1000)
    assert np.array_equal(m(raw), np.interp(raw, list(m.x), list(m.y)))
    assert m(0.5) == np.interp(0.5, list(m.x), list(m.y))
    assert m == MonotoneMap(m.x, m.y) and m(raw[:3]) is not m(raw[:3])


def test_a_map_is_monotone_clamped_and_survives_json():
    m = MonotoneMap((0.2, 0.5, 0.9), (0.1, 0.4, 0.95))
    assert m(np.array([0.0, 0.35, 1.0])) == pytest.approx([0.1, 0.25, 0.95])
    calibration = ConfidenceCalibration(m, MonotoneMap((0.0, 1.0), (0.0, 1.0)), "book A")
    again = ConfidenceCalibration.from_props({METADATA_KEY: calibration.to_json()})
    assert again == calibration
    assert ConfidenceCalibration.from_props({}) is None
    with pytest.raises(CalibrationError):
        MonotoneMap((0.2, 0.5), (0.6, 0.3))
    with pytest.raises(CalibrationError, match="unreadable confidence_calibration: unknown calibration version 7"):
        ConfidenceCalibration.from_json('{"version": 7}')
    for crafted in ("[]", '"text"', "7"):  # a model file's metadata is input: a clear error, never a traceback
        with pytest.raises(CalibrationError):
            ConfidenceCalibration.from_json(crafted)


def simulated(rng, n, truth):
    """Raw scores, and outcomes drawn with probability truth(raw): an overconfident score."""
    raw = 1 - rng.beta(0.6, 6, n)
    return raw, (rng.random(n) < truth(raw)).astype(float)


@pytest.mark.parametrize("fitter", [fit_monotone_map, fit_logistic_map])
def test_a_fitted_map_is_calibrated_on_fresh_examples(fitter):
    rng = np.random.default_rng(7)
    truth = lambda raw: raw ** 3  # noqa: E731
    raw, ok = simulated(rng, 20000, truth)
    fresh_raw, fresh_ok = simulated(rng, 20000, truth)
    m = fitter(raw, ok)
    assert expected_calibration_error(fresh_raw, fresh_ok) > 0.08
    assert expected_calibration_error(m(fresh_raw), fresh_ok) < 0.02
    assert all(b >= a for a, b in zip(m.y, m.y[1:]))


def test_a_logistic_map_refuses_a_score_that_points_the_wrong_way():
    rng = np.random.default_rng(1)
    raw = rng.random(500)
    with pytest.raises(CalibrationError):
        fit_logistic_map(raw, (rng.random(500) < 1 - raw).astype(float))


def test_error_share_of_the_lowest_tenth():
    errors = np.array([0, 0, 5, 0, 0, 0, 0, 0, 0, 5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    assert best_error_share(errors) == pytest.approx(10 / 20)
    confidence = np.linspace(1, 0, 20)  # the last two lines least confident
    assert error_share_of_lowest(confidence, errors) == pytest.approx(2 / 20)
    assert error_share_of_lowest(np.ones(20), errors) == pytest.approx(0 / 20)  # ties earn nothing


@pytest.fixture(scope="module")
def shipped():
    return Recognizer(SHIPPED_INT8, threads=1)


def test_the_shipped_model_carries_its_calibration_and_decoding_applies_it(shipped):
    calibration = shipped.calibration
    assert calibration is not None and "IbnQutayba" in calibration.fitted_on
    line = shipped.prepare(png_bytes(render_line("قال أبو محمد وهذا كتاب في الأدب والشعر", size=44)))
    probs = shipped.probabilities([line])[0]
    raw = decode_line(probs, shipped.info.alphabet, shipped.info.mirror)
    served = shipped.recognize_lines([line])[0]
    assert served.text == raw.text
    assert served.confidence == pytest.approx(float(calibration.line(raw.confidence)), abs=1e-4)
    unrounded = greedy_decode(probs).char_confidences  # an Arabic-only line: reading order is logical order
    assert [c.confidence for c in served.characters] == pytest.approx(
        calibration.character(np.array(unrounded)).tolist(), abs=1e-4)
    assert served.characters != raw.characters


@pytest.mark.parametrize("text", ["وكان عالما فاضلا حسن الخط كثير الحفظ", "قال أبو محمد وهذا كتاب في الأدب والشعر",
                                  "ثم رجع إلى بغداد فأقام بها حتى مات"])
def test_low_confidences_are_on_the_damaged_region_and_its_errors(shipped, text):
    clean = render_line(text, size=44)
    damaged = clean.copy()
    middle = damaged[:, int(0.4 * clean.shape[1]): int(0.6 * clean.shape[1])]
    rubbed = np.random.default_rng(0).random(middle.shape) < 0.5
    middle[rubbed] = 255 - middle[rubbed] // 2  # half the ink rubbed off, the paper speckled
    read_clean, read_damaged = (shipped.recognize_one(png_bytes(image)) for image in (clean, damaged))
    result = outcome(text, read_damaged)
    assert result.errors > outcome(text, read_clean).errors, read_damaged.text
    assert read_damaged.confidence < read_clean.confidence
    confidence = np.array([c.confidence for c in read_damaged.characters])
    right = np.array(result.char_correct)
    assert confidence[~right].mean() < confidence[right].mean() - 0.1
    assert not right[confidence.argmin()], "the least confident character should be a wrong one"


def test_calibrate_command_writes_the_maps_into_a_model_copy(tmp_path):
    from training import calibrate

    model = tmp_path / "copy-int8.onnx"
    shutil.copy(SHIPPED_INT8, model)
    books = tmp_path / "books"
    write_line_folder(books / "held_out", short_lines(48, offset=200), "Amiri-Regular", size=40)
    assert calibrate.main([str(model), str(books), "--sources", "held_out", "--out", str(tmp_path)]) == 0
    stored = Recognizer(model, threads=1).calibration
    assert stored is not None and stored.fitted_on.endswith("first 24 of 48 lines")
    assert stored != Recognizer(SHIPPED_INT8, threads=1).calibration
    report = json.loads((tmp_path / "copy-int8-calibration.json").read_text(encoding="utf-8"))
    assert report["fit"]["lines"] == report["check"]["lines"] == 24
    assert (tmp_path / "copy-int8-reliability.png").stat().st_size > 10_000
    assert not list(tmp_path.glob(".copy-int8.onnx.*"))  # no temporary left behind


def test_export_calibrates_what_it_writes_and_refuses_what_it_cannot_calibrate(tiny_run, tiny_arrays, rendered_books,
                                                                                tmp_path):
    """The tiny model reads no line exactly right: nothing to fit a line calibration on, said plainly."""
    from recognition.recognizer import Recognizer
    from training import export

    out = tmp_path / "tiny-calibrated.onnx"
    with pytest.raises(SystemExit, match="cannot calibrate .*tiny-calibrated.onnx.*both outcomes"):
        export.main([str(tiny_run), "--out", str(out), "--version", "1", "--parity-data", str(tiny_arrays),
                     "--parity-lines", "2", "--calibrate", str(rendered_books), "--calibration-sources", "book_amiri"])
    assert Recognizer(out, threads=1).calibration is None  # written, left uncalibrated
