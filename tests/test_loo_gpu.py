"""What the GPU leave-one-book-out path records about its folds: scripts/loo-gpu.sh's failures,
training.loo_finish's choice of folds and rows, and the state.json / export metadata of a converted run."""

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


# -- scripts/loo-gpu.sh ------------------------------------------------------------

FAKE_PYTHON = """#!/usr/bin/env bash
# training.synth fails for the book Bad, training.train_torch for the book Worse; all else succeeds.
args=" $* "
[[ $args == *" -m training.synth "* && $args == *" --exclude-corpus Bad "* ]] && exit 1
[[ $args == *" -m training.train_torch "* && $args == *" --val-source Worse "* ]] && exit 3
[[ $args == *" -m training.train_torch "* ]] && echo "$args" >> "$TRAINED"
exit 0
"""


def test_loo_gpu_names_every_failed_fold_and_trains_the_others(tmp_path):
    python = tmp_path / "python"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    trained = tmp_path / "trained.txt"
    env = {**os.environ, "PYTHON": str(python), "TRAINED": str(trained), "WORKERS": "1"}
    result = subprocess.run(["bash", str(REPO / "scripts" / "loo-gpu.sh"), "real", "text", str(tmp_path / "out"),
                             "Bad", "Good", "Worse", "--", "--epochs", "2"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Bad: FAILED making its synthetic lines" in result.stderr
    assert "Worse: training FAILED" in result.stderr
    assert "FAILED: Bad Worse" in result.stderr
    runs = trained.read_text().splitlines()
    assert len(runs) == 1 and "--val-source Good" in runs[0] and "--epochs 2" in runs[0]


# -- training.loo_finish --------------------------------------------------------------

def make_fold(out: Path, book: str, trained: int, planned: int) -> Path:
    run = out / book / "run"
    run.mkdir(parents=True)
    (run / "last.pt").write_bytes(b"weights")
    (run / "run.json").write_text(json.dumps({"args": {"epochs": planned, "lr": 1e-3, "val_source": book},
                                              "val_cer": [0.1] * trained, "minutes": 3.0, "machine": {}}))
    return run


@pytest.fixture
def fake_steps(monkeypatch):
    """loo_finish with its conversion, export, evaluation and corpus check stubbed: what each was asked to do."""
    from training import evaluate, export, loo_finish, torch_to_keras

    calls = []
    sources = {"all": None}

    def convert(argv):
        calls.append(("convert", argv[0]))
        Path(argv[argv.index("--out") + 1]).write_bytes(b"keras")
        return 0

    def export_main(argv):
        out = Path(argv[argv.index("--out") + 1])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(b"onnx")

    def evaluate_main(argv):
        out = Path(argv[argv.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        results = {s: {"lines": 10, "chars": 100, "cer": 0.05, "wer": 0.2} for s in sources["names"]}
        results["all"] = {"lines": 20, "chars": 200, "cer": 0.05, "wer": 0.2}
        (out / "evaluation.json").write_text(json.dumps({"results": results}))

    monkeypatch.setattr(torch_to_keras, "main", convert)
    monkeypatch.setattr(export, "main", export_main)
    monkeypatch.setattr(evaluate, "main", evaluate_main)
    monkeypatch.setattr(loo_finish, "corpus_check", lambda book, lines_dir, corpus: [0, 10])
    monkeypatch.setattr(loo_finish, "plot", lambda *a: None)
    sources["names"] = ["gs/book_Good/1", "gs/book_Other/1"]
    return calls, sources


def test_loo_finish_leaves_out_a_fold_still_training(tmp_path, fake_steps):
    from training import loo_finish

    calls, _ = fake_steps
    out = tmp_path / "series"
    make_fold(out, "Good", 3, 3)
    make_fold(out, "Other", 1, 3)  # trained one epoch of three so far: it has a last.pt all the same
    assert loo_finish.main([str(out), str(tmp_path), "--parity-data", "p"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [r["book"] for r in summary["per_fold"]] == ["Good"]
    assert summary["unfinished"] == {"Other": "1 of 3 epochs"} and summary["folds"] == 2
    assert summary["per_fold"][0]["epochs"] == 3  # run.json's epochs (it has no "history")
    assert summary["per_fold"][0]["source"] == "gs/book_Good/1"
    assert calls == [("convert", str(out / "Good" / "run" / "last.pt"))]


def test_loo_finish_redoes_a_fold_whose_run_trained_on(tmp_path, fake_steps):
    from training import loo_finish

    calls, _ = fake_steps
    out = tmp_path / "series"
    run = make_fold(out, "Good", 3, 3)
    assert loo_finish.main([str(out), str(tmp_path), "--parity-data", "p"]) == 0
    assert loo_finish.main([str(out), str(tmp_path), "--parity-data", "p"]) == 0
    assert len(calls) == 1  # done steps are not done again
    later = time.time() + 10
    os.utime(run / "last.pt", (later, later))  # resumed with more epochs after the first finish
    assert loo_finish.main([str(out), str(tmp_path), "--parity-data", "p"]) == 0
    assert len(calls) == 2


def test_loo_finish_refuses_a_book_matching_several_evaluated_sources(tmp_path, fake_steps):
    from training import loo_finish

    _, sources = fake_steps
    sources["names"] = ["gs/book_Good/1", "gs/book_Goodwin/1"]
    out = tmp_path / "series"
    make_fold(out, "Good", 3, 3)
    with pytest.raises(SystemExit, match="2 evaluated sources"):
        loo_finish.main([str(out), str(tmp_path), "--parity-data", "p"])


# -- a converted run's state.json and export metadata ------------------------------------

def test_export_describes_a_val_source_run_with_the_book_held_out(tmp_path):
    from training.export import describe_data
    from training.shards import MANIFEST

    (tmp_path / MANIFEST).write_text(json.dumps({"splits": {
        "train": {"sources": {"gs/book_A/1": 5, "gs/book_B/1": 7}}, "val": {"sources": {"gs/book_C/1": 3}}}}))
    plain = describe_data({"data": [str(tmp_path)]})
    assert plain["real"] == [{"train": {"gs/book_A/1": 5, "gs/book_B/1": 7}, "val": {"gs/book_C/1": 3}}]
    resplit = describe_data({"data": [str(tmp_path)], "val_source": "book_B"})
    assert resplit["real"] == [{"train": {"gs/book_A/1": 5, "gs/book_C/1": 3}, "val": {"gs/book_B/1": 7}}]


def checkpoint(epoch: int, planned: int) -> dict:
    return {"epoch": epoch, "step": 12 * epoch, "seconds": 5.0, "alphabet": json.dumps(["a"]),
            "model_config": {}, "machine": {}, "args": {"epochs": planned, "lr_schedule": "cosine"},
            "history": [{"epoch": e, "val_cer": 0.5, "step": 12 * e} for e in range(1, epoch + 1)]}


def test_a_converted_run_says_whether_it_trained_all_its_epochs():
    pytest.importorskip("torch")
    from training.model_card import _unsteered
    from training.torch_to_keras import run_state

    done = run_state(checkpoint(3, 3), Path("last.pt"))
    assert done["stop_reason"] == "epochs done"
    assert _unsteered(done)  # fixed epochs, cosine, no early stopping in train_torch
    cut = run_state(checkpoint(1, 3), Path("last.pt"))
    assert cut["stop_reason"] == "interrupted after epoch 1 of 3"
    assert not _unsteered(cut)
