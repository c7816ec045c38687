"""Book adaptation's command (training.adapt), its benchmark (bench.adaptation) and the gate's rule
(recognition.adaptation_gate), which the service and the benchmark share. That a tiny model gets better on
a book is tested end to end in tests/service/test_book_adaptation.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recognition.adaptation_gate import judge_adaptation
from tests.conftest import short_lines, write_line_folder

BOOK_FACE = "Lateef-Regular"   # a face the tiny model never saw


@pytest.fixture(scope="session")
def lateef_book(tmp_path_factory):
    root = tmp_path_factory.mktemp("lateef")
    write_line_folder(root / "corrected", short_lines(64, offset=900), BOOK_FACE)
    write_line_folder(root / "heldout", short_lines(16, offset=2000), BOOK_FACE)
    return root


@pytest.mark.slow
def test_the_adaptation_benchmark_reports_cer_and_minutes_per_point(tiny_model, lateef_book, tmp_path):
    from bench import adaptation

    out = tmp_path / "adaptation.json"
    adaptation.main([str(lateef_book / "corrected"), "--corrected", "0,20", "--base", str(tiny_model),
                     "--json", str(out), "--adapt-args", "--epochs 1 --steps-per-epoch 2 --batch-size 8 "
                     "--replay-lines 8 --reference-lines 6 --no-augment"])
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["evaluation_lines"] == 64 - 20 and out.with_suffix(".png").stat().st_size > 0
    base, adapted = report["points"]
    assert (base["corrected"], base["trained_on"], base["epochs"]) == (0, 0, 0)
    assert (adapted["corrected"], adapted["trained_on"], adapted["gate_lines"]) == (20, 16, 4)
    assert adapted["epochs"] == 1 and adapted["steps"] == 2 and adapted["calibration"].startswith("none")
    assert adapted["cpu_minutes"] > 0 and 0 <= adapted["book_cer"] <= 1.5
    assert adapted["gate"].startswith(("accepted", "refused"))


def test_the_adaptation_benchmark_chooses_the_decoding_on_corrected_lines_with_a_real_model(tiny_model, lateef_book,
                                                                                             tmp_path):
    from bench import adaptation
    from recognition.char_lm import save
    from training import char_lm

    general = tmp_path / "general"
    general.mkdir()
    (general / "text.txt").write_text("\n".join(short_lines(40, offset=5000)) + "\n", encoding="utf-8")
    save(tmp_path / "lm.npz", *char_lm.build(short_lines(40, offset=5000), order=3))
    out = tmp_path / "adaptation.json"
    adaptation.main([str(lateef_book / "corrected"), "--corrected", "0,10", "--base", str(tiny_model),
                     "--json", str(out), "--adapt-args", "--epochs 1 --steps-per-epoch 1 --batch-size 8 "
                     "--replay-lines 8 --reference-lines 6 --no-augment", "--max-eval-lines", "12",
                     "--tune-decoding", "--lm", str(tmp_path / "lm.npz"), "--book-lm-corpus", str(general),
                     "--base-tune-lines", "10"])
    base, adapted = json.loads(out.read_text(encoding="utf-8"))["points"]
    assert base["decoding"]["tuned_on"] == {"general_lm": 10, "book_lm": 2}
    assert adapted["decoding"]["tuned_on"] == {"general_lm": 2, "book_lm": 2}
    assert adapted["decoding"]["book_lm"] == {"lines": 48, "general_lines": 40, "reviewed_lines": 8}
    for point in (base, adapted):
        rest = point["decoding"]["rest"]
        assert rest["greedy"]["lines"] == 12 and rest["greedy"]["cer"] == pytest.approx(point["book_cer"])
        assert point["decoding"]["chosen"]["cer"] <= point["decoding"]["table"][0]["cer"]


def test_no_corrected_lines_measures_the_base_model_only(tiny_model, lateef_book, tmp_path):
    from training import adapt

    result = adapt.adapt(adapt.build_parser().parse_args([
        "--base", str(tiny_model), "--heldout", str(lateef_book / "heldout"), "--out", str(tmp_path),
        "--reference-lines", "4"]))
    assert result["train_lines"] == 0 and result["model"] is None and not result["accepted"]
    assert result["after_cer"] == result["before_cer"]


def test_the_gate_refuses_a_model_no_better_on_the_book():
    verdict = judge_adaptation(before_cer=0.05, after_cer=0.05, reference_cer=0.02, global_reference_cer=0.02)
    assert not verdict.accepted and "not better on the book" in verdict.reason


def test_the_gate_refuses_a_model_that_forgets_general_print():
    verdict = judge_adaptation(before_cer=0.05, after_cer=0.02, reference_cer=0.025, global_reference_cer=0.02)
    assert not verdict.accepted and "forgets" in verdict.reason
    assert judge_adaptation(0.05, 0.02, 0.024, 0.02).accepted   # exactly 1.2x is allowed


def test_an_adapted_model_carries_the_base_models_calibration_and_its_training_plan(tiny_model, lateef_book,
                                                                                     tmp_path):
    import shutil

    import onnx

    from recognition.calibration import ConfidenceCalibration, MonotoneMap
    from training import adapt
    from training.calibrate import write_calibration

    base = tmp_path / "base" / tiny_model.name   # a copy: the session's tiny model stays uncalibrated
    base.parent.mkdir()
    for twin in tiny_model.parent.glob(f"{tiny_model.stem}.*"):
        shutil.copy(twin, base.parent / twin.name)
    calibration = ConfidenceCalibration(MonotoneMap((0.2, 0.9), (0.1, 0.8)), MonotoneMap((0.5,), (0.4,)), "a book")
    write_calibration(base, calibration)
    result = adapt.adapt(adapt.build_parser().parse_args([
        "--base", str(base), "--train", str(lateef_book / "corrected"), "--heldout", str(lateef_book / "heldout"),
        "--out", str(tmp_path / "out"), "--max-steps", "4", "--evaluations", "2", "--batch-size", "8",
        "--replay-lines", "8", "--reference-lines", "6", "--no-augment"]))
    props = {p.key: p.value for p in onnx.load(result["model"]).metadata_props}
    assert ConfidenceCalibration.from_props(props) == calibration
    assert result["calibration"].startswith("carried over from tiny-test.onnx (a book)")
    # The step budget is kept (4 steps, judged twice), however many lines the book has.
    assert result["plan"] == {"max_steps": 4, "steps_per_epoch": 2, "epochs": 2, "min_steps": 2}
    assert result["steps"] == 4 and result["epochs"] == 2


def test_the_step_budget_grows_with_the_corrected_lines_within_its_bounds():
    from training import adapt

    def plan(lines: int) -> dict:
        return adapt.training_plan(lines, adapt.build_parser().parse_args(["--heldout", "x", "--base", "m",
                                                                           "--out", "o"]))

    assert plan(40)["max_steps"] == 200 and plan(160)["max_steps"] == 480 and plan(1000)["max_steps"] == 1200
    assert plan(160)["steps_per_epoch"] == 24 and plan(160)["epochs"] == 20 and plan(160)["min_steps"] == 240


def test_an_adapted_model_carries_the_spacing_its_corrected_lines_use_and_reads_with_it(tiny_model, tmp_path):
    """The book's conventions are learned from the lines trained on only (the held-out slice here spaces
    "." the other way: learned from both, 50/50, there would be no rule), stored in the adapted model and
    its int8 twin, and the gate's CER is what the Recognizer reads with them."""
    import onnx

    from recognition.conventions import METADATA_KEY, TranscriptionConventions
    from training import adapt

    def words(text: str) -> str:
        return " ".join("".join(c for c in text if c.isalpha() or c == " ").split())

    book = tmp_path / "book"
    write_line_folder(book / "corrected", [f"{words(t)} ." for t in short_lines(16, offset=900)], BOOK_FACE)
    write_line_folder(book / "heldout", [f"{words(t)}." for t in short_lines(16, offset=2000)], BOOK_FACE)
    args = ["--base", str(tiny_model), "--train", str(book / "corrected"), "--heldout", str(book / "heldout"),
            "--max-steps", "2", "--evaluations", "1", "--batch-size", "8", "--replay-lines", "8",
            "--reference-lines", "6", "--no-augment", "--int8", "--conventions-min-count", "16"]
    # The tiny model reads next to nothing, so no rule can remove an error from its readings: keep the
    # rules that do no harm, to follow one through.
    result = adapt.adapt(adapt.build_parser().parse_args(
        [*args, "--out", str(tmp_path / "out"), "--conventions-min-gain", "0"]))
    assert result["conventions"]["rules"] == ["a space before '.' (100% of 16)"]
    assert result["conventions"]["candidates"][0]["errors_removed"] == 0
    for model in (result["model"], tmp_path / "out" / f"{adapt.build_parser().get_default('name')}.onnx"):
        stored = {p.key: p.value for p in onnx.load(str(model)).metadata_props}
        assert [r.describe() for r in TranscriptionConventions.from_json(stored[METADATA_KEY]).rules] == \
            result["conventions"]["rules"]
    assert result["model"].endswith("-int8.onnx")
    adapted = tmp_path / "out" / "adapted-int8.onnx"
    assert result["after_cer"] == adapt.model_cer(adapted, [str(book / "heldout")])[0]
    # The forgetting check reads the general reference set as the network does, without the book's habits.
    assert result["reference_cer"] == adapt.model_cer(adapted, result["reference"], apply_conventions=False)[0]
    assert result["conventions"]["reference_cer_with_them"] == adapt.model_cer(adapted, result["reference"])[0]

    # By default a rule must correct the model's readings of the lines it was learned from: none here.
    plain = adapt.adapt(adapt.build_parser().parse_args([*args, "--out", str(tmp_path / "plain")]))
    assert plain["conventions"]["rules"] == [] and len(plain["conventions"]["candidates"]) == 1
    assert METADATA_KEY not in {p.key for p in onnx.load(plain["model"]).metadata_props}


@pytest.mark.slow
def test_reuse_kept_reuses_only_a_finished_adaptation_of_the_same_inputs(tiny_model, lateef_book, tmp_path):
    from bench import adaptation

    keep = tmp_path / "keep"
    kept = keep / "n10" / "out" / "result.json"
    fast = "--epochs 1 --steps-per-epoch 1 --batch-size 8 --replay-lines 8 --reference-lines 6 --no-augment"

    def run(adapt_args: str) -> dict:
        out = tmp_path / "adaptation.json"
        adaptation.main([str(lateef_book / "corrected"), "--corrected", "10", "--base", str(tiny_model),
                         "--json", str(out), "--max-eval-lines", "8", "--keep", str(keep), "--reuse-kept",
                         "--adapt-args", adapt_args])
        return json.loads(out.read_text(encoding="utf-8"))["points"][0]

    first = run(fast)
    adapted_at = kept.stat().st_mtime_ns
    assert run(fast) == first and kept.stat().st_mtime_ns == adapted_at      # same inputs: read back, not redone
    other = run(fast.replace("--steps-per-epoch 1", "--steps-per-epoch 2"))
    assert kept.stat().st_mtime_ns != adapted_at and other["steps"] == 2     # other --adapt-args: adapted again
    # an interrupted run (lines linked, no result): adapted again from a clean folder, not a crash on old links
    kept.unlink()
    (keep / "n10" / "inputs.json").unlink()
    again = run(fast)
    assert again["steps"] == 1 and kept.exists() and (keep / "n10" / "inputs.json").exists()


def test_the_lowest_confidence_choice_takes_the_lines_the_base_model_is_least_sure_of_in_file_order(lateef_book):
    from bench import adaptation_selection as selection
    from recognition.line_data import SkipReport, iter_samples
    from recognition.recognizer import Recognizer

    # The shipped model, calibrated as the service reads with it (the tiny one is equally unsure of every line).
    shipped = Path(__file__).resolve().parent.parent / "models" / "arabic-crnn-v2-int8.onnx"
    pool = list(iter_samples([str(lateef_book / "corrected")], SkipReport()))[:40]
    reading = selection.read_pool(shipped, pool)
    confidences = [r.confidence for r in Recognizer(shipped).recognize([s.image_path for s in pool])]
    assert len(set(confidences)) > 30   # it tells the lines apart: the choice is not made by ties
    chosen = reading.lowest_confidence(10)
    assert chosen == sorted(chosen) and len(set(chosen)) == 10 and chosen != list(range(10))
    assert max(confidences[i] for i in chosen) < min(c for i, c in enumerate(confidences) if i not in chosen)
    assert reading.cer(range(40)) == pytest.approx(Recognizer(shipped).evaluate(pool).cer)
    assert reading.cer(chosen) > reading.cer(range(40))   # the least sure lines are the worse read
    described = selection.describe(reading, chosen, 10)
    assert described["lines"] == [f"{i:06d}.png" for i in chosen] and described["in_first_n"] == sum(
        i < 10 for i in chosen)
    with pytest.raises(ValueError):
        reading.lowest_confidence(41)


def test_lines_of_equal_confidence_are_chosen_in_file_order():
    from bench.adaptation_selection import PoolReading

    reading = PoolReading(samples=list("abcde"), confidences=[0.5, 0.2, 0.5, 0.9, 0.2], references=[""] * 5,
                          hypotheses=[""] * 5)
    assert reading.lowest_confidence(3) == [0, 1, 4] and reading.lowest_confidence(2) == [1, 4]


@pytest.mark.slow
def test_the_adaptation_benchmark_adapts_on_the_lowest_confidence_lines_and_records_them(tiny_model, lateef_book,
                                                                                        tmp_path):
    from bench import adaptation
    from bench import adaptation_selection as selection
    from recognition.line_data import SkipReport, iter_samples

    keep, out = tmp_path / "keep", tmp_path / "adaptation.json"
    kept = keep / "n10" / "out" / "result.json"

    def run(choose: str) -> dict:
        adaptation.main([str(lateef_book / "corrected"), "--corrected", "10", "--evaluate-after", "30",
                         "--choose", choose, "--base", str(tiny_model), "--json", str(out), "--max-eval-lines", "8",
                         "--keep", str(keep), "--reuse-kept", "--adapt-args", "--epochs 1 --steps-per-epoch 1 "
                         "--batch-size 8 --replay-lines 8 --reference-lines 6 --no-augment"])
        return json.loads(out.read_text(encoding="utf-8"))

    report = run("lowest-confidence")
    pool = selection.read_pool(tiny_model, list(iter_samples([str(lateef_book / "corrected")], SkipReport()))[:30])
    chosen = pool.lowest_confidence(10)
    point = report["points"][0]
    assert report["choose"] == "lowest-confidence" and report["evaluation_first"] == "000030.png"
    assert report["pool"]["lines"] == 30 and report["pool"]["base_cer"] == pytest.approx(pool.cer(range(30)))
    assert point["chosen"]["lines"] == [f"{i:06d}.png" for i in chosen]
    assert point["chosen"]["base_cer"] == pytest.approx(pool.cer(chosen))
    assert (point["trained_on"], point["gate_lines"]) == (8, 2)
    trained = json.loads((keep / "n10" / "inputs.json").read_text(encoding="utf-8"))["train"]
    assert [Path(image).name for image, _ in trained] == [f"{i:06d}.png" for k, i in enumerate(chosen) if k % 5 != 4]
    adapted_at = kept.stat().st_mtime_ns
    first = run("first")   # the kept lowest-confidence adaptation is not this one's: adapted again
    assert first["choose"] == "first" and "pool" not in first and "chosen" not in first["points"][0]
    assert kept.stat().st_mtime_ns != adapted_at


@pytest.mark.parametrize("options", [["--reuse-kept"], ["--book-lm-corpus", "x"], ["--lm", "x.npz"],
                                     ["--tune-decoding", "--book-lm-exclude", "Book"],
                                     ["--tune-decoding", "--corrected", "50", "--base-tune-lines", "40"],
                                     ["--tune-decoding", "--corrected", "0,3"], ["--corrected", "0,4,50"],
                                     ["--choose", "lowest-confidence", "--corrected", "50"],
                                     ["--choose", "lowest-confidence", "--corrected", "50", "--evaluate-after", "40"]])
def test_the_adaptation_benchmark_refuses_options_it_would_ignore(options, tmp_path, capsys):
    from bench import adaptation

    with pytest.raises(SystemExit):
        adaptation.main([str(tmp_path / "no-book"), "--json", str(tmp_path / "a.json"), *options])
    err = capsys.readouterr().err
    assert any(why in err for why in ("only appl", "needs --keep", "no corrected line held out",
                                      "needs --evaluate-after", "more than the")), err
