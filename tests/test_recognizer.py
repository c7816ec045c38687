"""The entry point on the shipped model: inputs, one outcome per input, batch independence, bounded input."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recognition import LineError, LineResult, Recognizer
from recognition.image import ImageError, LineLimits
from recognition.line_data import LineSample
from tests.rendering import png_bytes, render_line

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_INT8 = ROOT / "models" / "arabic-crnn-v1-int8.onnx"

SHORT = "قال"
TEXTS = ["قال أبو محمد", "سنة 45", "ثم دخلت سنة ست وعشرين", "وكان عالما فاضلا حسن الخط كثير الحفظ",
         "محمد بن علي", "انظر الجزء 12 من الكتاب"]


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(SHIPPED_INT8, threads=1, max_batch=32)


def blank_png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (width, height), 255).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def assert_same_reading(a: LineResult, b: LineResult) -> None:
    assert a.text == b.text
    assert a.confidence == pytest.approx(b.confidence, abs=1e-4)
    assert [c.char for c in a.characters] == [c.char for c in b.characters]
    assert np.allclose([c.confidence for c in a.characters], [c.confidence for c in b.characters], atol=1e-4)


@pytest.mark.parametrize("model", ["arabic-crnn-v1-int8.onnx", "arabic-crnn-v1.onnx"])
def test_a_line_reads_the_same_alone_in_a_batch_of_32_and_beside_lines_ten_times_wider(model):
    """The float model batches (padding masked), the int8 one runs per line: both must hold."""
    recognizer = Recognizer(ROOT / "models" / model, threads=1, max_batch=32)
    images = [png_bytes(render_line(t)) for t in [SHORT, *TEXTS]]
    wide = [png_bytes(render_line(" ".join([t] * 10))) for t in TEXTS[:3]]
    widths = [recognizer.prepare(i).shape[1] for i in images]
    assert min(recognizer.prepare(w).shape[1] for w in wide) >= 10 * widths[0]
    alone = [recognizer.recognize([image])[0] for image in images]
    assert alone[1].text  # the shipped model reads these lines (not a vacuous comparison)
    batch_of_32 = (images * 6)[:32]
    in_batch = recognizer.recognize(batch_of_32)
    beside_wide = recognizer.recognize([wide[0], *images, wide[1], wide[2]])[1:-2]
    for i, reading in enumerate(alone):
        assert_same_reading(reading, in_batch[i])
        assert_same_reading(reading, in_batch[i + len(images)])
        assert_same_reading(reading, beside_wide[i])


def _model_runs(model_path, count: int) -> list[tuple]:
    """The batch shapes the real session is run with when ``count`` lines are recognised together."""
    calls = []
    probe = Recognizer(model_path, threads=1, max_batch=32)
    run = probe.session.run

    class CountingSession:  # the real session, counted
        def run(self, outputs, feed):
            calls.append(feed[probe.input_name].shape)
            return run(outputs, feed)

    probe.session = CountingSession()
    lines = [probe.prepare(png_bytes(render_line(t))) for t in TEXTS[:count]]
    probe.recognize_lines(lines)
    return calls, lines


def test_a_dynamically_quantised_model_runs_each_line_alone():
    """Its activations are scaled per run, so batching would make a line depend on its neighbours."""
    assert not Recognizer(SHIPPED_INT8).batches_lines
    calls, lines = _model_runs(SHIPPED_INT8, 3)
    assert [shape[0] for shape in calls] == [1, 1, 1]
    assert sorted(shape[2] for shape in calls) == sorted(-(-line.shape[1] // 4) * 4 for line in lines)


def test_a_batch_independent_model_reads_lines_together():
    float_model = SHIPPED_INT8.with_name(SHIPPED_INT8.name.replace("-int8", ""))
    assert Recognizer(float_model).batches_lines
    calls, _ = _model_runs(float_model, 3)
    assert [shape[0] for shape in calls] == [3]


def test_paths_bytes_files_and_grey_arrays_read_alike(recognizer, tmp_path):
    grey = render_line(TEXTS[0])
    path = tmp_path / "line.png"
    path.write_bytes(png_bytes(grey))
    with path.open("rb") as f:
        outcomes = recognizer.recognize([path, str(path), path.read_bytes(), f, grey])
    for outcome in outcomes[1:]:
        assert_same_reading(outcomes[0], outcome)


def test_grey_arrays_other_than_2d_uint8_are_refused_not_misread(recognizer):
    """A float line in [0, 1] would pass for a dark page, be inverted and read as nothing: refused instead."""
    grey = render_line(TEXTS[0])
    as_float = grey.astype(np.float32) / 255
    outcomes = recognizer.recognize([as_float, grey.astype(np.float64), grey[..., None], np.stack([grey] * 3, -1),
                                     np.zeros((0, 0), np.uint8), grey])
    assert [getattr(o, "code", None) for o in outcomes] == ["unsupported_array"] * 4 + ["empty_image", None]
    assert "uint8" in outcomes[0].message and "float32" in outcomes[0].message
    assert "2-D" in outcomes[2].message
    assert outcomes[-1].text  # the same line as uint8 reads
    with pytest.raises(ImageError, match="uint8"):
        recognizer.recognize_one(as_float)


def test_one_outcome_per_input_and_a_bad_image_fails_only_itself(recognizer):
    good = png_bytes(render_line(TEXTS[0]))
    outcomes = recognizer.recognize([b"", good, b"not an image", blank_png(50_000, 1), good])
    assert [type(o).__name__ for o in outcomes] == ["LineError", "LineResult", "LineError", "LineError",
                                                    "LineResult"]
    assert [o.code for o in outcomes if isinstance(o, LineError)] == ["empty_file", "not_an_image",
                                                                     "not_a_line_image"]
    assert_same_reading(outcomes[1], recognizer.recognize([good])[0])


@pytest.mark.parametrize("width, height, why", [
    (50_000, 1, "a 1-pixel strip"),
    (19_999_999, 1, "passes the service's 20-megapixel guard"),
    (6_000, 8, "750:1, 36,000 model pixels wide"),
])
def test_images_that_are_not_lines_are_refused_before_decoding(recognizer, width, height, why):
    outcome = recognizer.recognize([blank_png(width, height)])[0]
    assert isinstance(outcome, LineError) and outcome.code == "not_a_line_image", why


def test_a_thin_stroke_on_a_tall_canvas_is_refused_after_trimming(recognizer):
    canvas = np.full((100, 3000), 255, np.uint8)
    canvas[50:52, 10:2990] = 0  # a rule: trimmed to 2 pixels high, 3000 wide
    outcome = recognizer.recognize([canvas])[0]
    assert isinstance(outcome, LineError) and outcome.code == "not_a_line_image"
    assert "trimmed" in outcome.message


def test_limits_are_settings():
    generous = Recognizer(SHIPPED_INT8, threads=1, limits=LineLimits(max_width=100_000, min_height=1))
    strict = Recognizer(SHIPPED_INT8, threads=1, limits=LineLimits(max_width=100, min_height=8))
    line = png_bytes(render_line(TEXTS[3]))
    assert isinstance(generous.recognize([line])[0], LineResult)
    assert strict.recognize([line])[0].code == "not_a_line_image"


MEMORY_PROBE = textwrap.dedent("""
    import io, json, resource, sys
    from PIL import Image
    from recognition import Recognizer
    from tests.rendering import png_bytes, render_line

    def png(width, height):
        buffer = io.BytesIO()
        Image.new("L", (width, height), 255).save(buffer, format="PNG", optimize=True)
        return buffer.getvalue()

    hostile = [png(50_000, 1), png(19_999_999, 1), png(2_000_000, 10)]
    recognizer = Recognizer(sys.argv[1], threads=1, max_pixels=20_000_000)
    recognizer.recognize([png_bytes(render_line("قال أبو محمد"))])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    codes = [outcome.code for outcome in recognizer.recognize(hostile)]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"codes": codes, "grew_kib": after - before, "peak_kib": after}))
""")


def test_hostile_images_keep_a_worker_within_its_memory_budget():
    """The issue's images (9 GB and 184 GB asked of OpenCV before): peak memory hardly moves."""
    probe = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(SHIPPED_INT8)], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout.splitlines()[-1])
    assert report["codes"] == ["not_a_line_image"] * 3
    # growth of the peak, not the peak: a child forked from a big pytest process inherits its high-water mark
    assert report["grew_kib"] < 50 * 1024, report


def test_evaluate_scores_per_source_and_counts_unreadable_lines_as_missed(recognizer, tmp_path):
    samples = []
    for i, text in enumerate(TEXTS[:3]):
        path = tmp_path / f"{i}.png"
        path.write_bytes(png_bytes(render_line(text)))
        samples.append(LineSample(path, text, "book_a" if i < 2 else "book_b"))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"nope")
    samples.append(LineSample(broken, "محمد", "book_b"))
    evaluation = recognizer.evaluate(samples, chunk=2)
    readings = recognizer.recognize([s.image_path for s in samples[:3]])
    assert evaluation.hypotheses == [r.text for r in readings] + [""]
    assert [(s.image_path, code) for s, code in evaluation.unreadable] == [(broken, "not_an_image")]
    table = evaluation.table()
    assert list(table) == ["book_a", "book_b", "all"]
    assert table["all"]["lines"] == 4 and table["book_b"]["chars"] == len(TEXTS[2]) + len("محمد")
    assert evaluation.by_source["book_b"].char_errors >= len("محمد")  # the unreadable line: all missed
    assert evaluation.cer == pytest.approx(
        sum(c.char_errors for k, c in evaluation.by_source.items() if k != "all")
        / sum(c.chars for k, c in evaluation.by_source.items() if k != "all"))


def test_a_model_with_its_books_conventions_reads_with_them_everywhere(tmp_path):
    """An adapted model's spacing rules (recognition.conventions, in its metadata) are applied by decoding: to
    images and to preprocessed lines (what pages and jobs read) alike, and to what ``evaluate`` scores; the same
    weights without them read as before."""
    import shutil

    from recognition.conventions import BEFORE, SpacingRule, TranscriptionConventions
    from training.calibrate import write_model_property

    rules = TranscriptionConventions((SpacingRule(".", BEFORE, True, 0.95, 55), SpacingRule("،", BEFORE, True, 0.91, 136)),
                                     "136 corrected lines")
    adapted_path = tmp_path / "adapted-int8.onnx"
    shutil.copy(SHIPPED_INT8, adapted_path)
    write_model_property(adapted_path, "transcription_conventions", rules.to_json())
    plain, adapted = Recognizer(SHIPPED_INT8, threads=1), Recognizer(adapted_path, threads=1)
    assert adapted.conventions == rules and plain.conventions is None
    assert Recognizer(adapted_path, threads=1, apply_conventions=False).conventions is None

    texts = ["قال أبو محمد، وهذا كتاب.", "ثم دخلت سنة ست وعشرين.", "محمد بن علي"]
    images = [png_bytes(render_line(t, size=44)) for t in texts]
    before, after = plain.recognize(images), adapted.recognize(images)
    assert [a.text for a in after] == [rules.apply_text(b.text) for b in before]
    assert after[0].text.endswith(" .") and " ،" in after[0].text and after[2].text == before[2].text
    for a, b in zip(after, before):
        assert "".join(c.char for c in a.characters) == a.text and a.confidence == b.confidence
    space = after[0].characters[-2]
    assert space.char == " " and space.confidence == pytest.approx(0.95 * after[0].characters[-1].confidence,
                                                                   abs=2e-4)
    lines = [adapted.prepare(image) for image in images]
    assert [r.text for r in adapted.recognize_lines(lines)] == [a.text for a in after]

    for n, image in enumerate(images):
        (tmp_path / f"{n}.png").write_bytes(image)
    samples = [LineSample(tmp_path / f"{n}.png", text.replace(".", " .").replace("،", " ،"), "book")
               for n, text in enumerate(texts)]
    assert adapted.evaluate(samples).cer < plain.evaluate(samples).cer
