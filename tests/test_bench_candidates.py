"""bench.candidates: candidate recipes compared on their held-out book from their kept records."""

import csv
import json

import pytest

from bench import candidates


def write_fold(folder, args: dict, curve: list[float], cer: float, trained: list[float] | None = None, synth=None):
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps({"args": args, "machine": {"gpu": None}}), encoding="utf-8")
    with (folder / "history.csv").open("w", newline="") as f:
        fields = ["epoch", "val_cer"] + (["val_cer_trained"] if trained else [])
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        for i, v in enumerate(curve):
            w.writerow({"epoch": i + 1, "val_cer": v, **({"val_cer_trained": trained[i]} if trained else {})})
    source = f"gs/book_{args['val_source']}.Adab/7_final"
    (folder / "evaluation.json").write_text(json.dumps({
        "results": {source: {"cer": cer, "wer": 5 * cer, "cer_no_punctuation_spacing": cer / 2}, "all": {"cer": 0.01, "wer": 0.05}},
        "confidence": {source: {"error_share_lowest_10pct": 0.2, "error_share_best_possible": 0.4}}}),
        encoding="utf-8")
    if synth is not None:
        (folder / "synth.json").write_text(json.dumps(synth), encoding="utf-8")


BASE_ARGS = {"val_source": "Qut", "epochs": 2, "lr": 0.001, "batch_size": 16, "device": "cuda", "workers": 2,
             "data": ["/tmp/a"], "out": "/tmp/o"}


def test_candidates_are_compared_on_what_their_recipes_changed(tmp_path, capsys):
    write_fold(tmp_path / "loo" / "Qut", BASE_ARGS, [0.05, 0.03], 0.03)
    write_fold(tmp_path / "cand" / "spaced", {**BASE_ARGS, "ema": 0.999, "device": "cpu", "precision": "bf16"},
               [0.04, 0.024], 0.024, trained=[0.05, 0.026], synth={"lines": 45000, "spaced_punctuation_rate": 0.5})
    assert candidates.main([str(tmp_path / "loo" / "Qut"), str(tmp_path / "cand" / "spaced"),
                            "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    row = next(line for line in printed.splitlines() if line.startswith("| cand/spaced"))
    # the recipe's changes, never the machine's; the baseline kept no synth.json: its lines are unknown, and a rate
    # option it does not name did not exist then (0)
    changes = row.split("|")[2]
    assert "ema=0.999" in changes and "device" not in changes and "precision" not in changes
    assert "synth_spaced_punctuation_rate=0.5" in changes and "synth_lines=45000 (baseline's unknown)" in changes
    assert "eulogy" not in changes
    assert "2.40%" in row and "0.80" in row and "1.20%" in row and "2.40% (2.60%)" in row
    record = json.loads((tmp_path / "out" / "candidates.json").read_text(encoding="utf-8"))
    assert [c["book"] for c in record] == ["Qut", "Qut"] and record[1]["curve_trained"] == [0.05, 0.026]
    assert (tmp_path / "out" / "candidates.png").stat().st_size > 10_000


def test_candidates_holding_out_different_books_are_refused(tmp_path):
    write_fold(tmp_path / "a" / "Qut", BASE_ARGS, [0.03], 0.03)
    write_fold(tmp_path / "b" / "Ath", {**BASE_ARGS, "val_source": "Ath"}, [0.07], 0.07)
    with pytest.raises(SystemExit):
        candidates.main([str(tmp_path / "a" / "Qut"), str(tmp_path / "b" / "Ath"), "--out", str(tmp_path / "o")])


def test_a_baseline_without_the_newer_ema_argument_is_the_same_recipe_as_ema_zero(tmp_path, capsys):
    write_fold(tmp_path / "loo" / "Qut", BASE_ARGS, [0.03], 0.03)
    write_fold(tmp_path / "cand" / "rerun", {**BASE_ARGS, "ema": 0.0}, [0.03], 0.03)
    assert candidates.main([str(tmp_path / "loo" / "Qut"), str(tmp_path / "cand" / "rerun"),
                            "--out", str(tmp_path / "out")]) == 0
    assert "(the baseline's recipe)" in capsys.readouterr().out


def write_ensemble(folder, members: list[str], cer: float, book: str = "Qut"):
    folder.mkdir(parents=True)
    (folder / "ensemble.json").write_text(json.dumps({"members": members}), encoding="utf-8")
    source = f"gs/book_{book}.Adab/7_final"
    (folder / "evaluation.json").write_text(json.dumps({
        "results": {source: {"cer": cer, "wer": 5 * cer, "cer_no_punctuation_spacing": cer / 2}},
        "confidence": {source: {"error_share_lowest_10pct": 0.25, "error_share_best_possible": 0.4}}}),
        encoding="utf-8")


def test_an_ensemble_of_one_recipes_seeds_is_a_candidate_with_its_members_recipe(tmp_path, capsys):
    write_fold(tmp_path / "cand" / "base", BASE_ARGS, [0.05, 0.03], 0.03)
    write_fold(tmp_path / "cand" / "s8", {**BASE_ARGS, "ema": 0.999, "seed": 8}, [0.04, 0.028], 0.028)
    write_fold(tmp_path / "cand" / "s9", {**BASE_ARGS, "ema": 0.999, "seed": 9, "device": "cpu"}, [0.04, 0.026], 0.026)
    write_ensemble(tmp_path / "cand" / "s8+s9", ["s8", "s9"], 0.024)
    assert candidates.main([str(tmp_path / "cand" / f) for f in ("base", "s8", "s9", "s8+s9")]
                           + ["--out", str(tmp_path / "out")]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| cand/s8+s9"))
    assert "ensemble of 2" in row and "seed=8+9" in row and "ema=0.999" in row and "2.40%" in row
    assert row.rstrip().endswith("| - |")  # no validation curve of its own
    assert (tmp_path / "out" / "candidates.png").exists()


def test_an_ensemble_of_different_recipes_is_refused(tmp_path):
    write_fold(tmp_path / "cand" / "a", BASE_ARGS, [0.03], 0.03)
    write_fold(tmp_path / "cand" / "b", {**BASE_ARGS, "ema": 0.999}, [0.03], 0.03)
    write_ensemble(tmp_path / "cand" / "a+b", ["a", "b"], 0.024)
    with pytest.raises(SystemExit, match="differ in more than the seed"):
        candidates.main([str(tmp_path / "cand" / "a+b"), "--out", str(tmp_path / "o")])
