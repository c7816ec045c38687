"""The GPU leave-one-book-out path end to end, on the CPU, with its real components: ``scripts/loo-gpu.sh``
renders, preprocesses and trains (``training.train_torch``) the folds of three tiny rendered books, and
``training.loo_finish`` converts, exports, evaluates and checks the corpus of what it trained.

The books' lines are words of the shipped corpus in a random order of each book's own, so a run of six words
(``training.text_overlap.RUN_WORDS``) tells which book's text a synthetic line was drawn from."""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS_LINES, write_line_folder
from training.text_overlap import lines_sharing_runs

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
BOOKS = {"Alpha": "Amiri-Regular", "Beta": "Scheherazade-Regular", "Gamma": "Amiri-Regular"}
LINES_PER_BOOK, WORDS_PER_LINE = 8, 8
# Every fold's training: seconds on one CPU core.
TRAIN_ARGS = ["--preset", "tiny", "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "4",
              "--max-val-lines", "4", "--min-char-count", "1", "--no-augment", "--threads", "1"]


def loo_gpu(real: Path, text: Path, out: Path, *books_and_args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "SYNTH_LINES": "24", "WORKERS": "1", "LOADER_WORKERS": "0",
           "OMP_NUM_THREADS": "1", **extra_env}
    return subprocess.run(["bash", str(REPO / "scripts" / "loo-gpu.sh"), str(real), str(text), str(out),
                           *books_and_args], env=env, capture_output=True, text=True, timeout=180)


def book_words(lines_dir: Path, book: str) -> list[str]:
    from recognition.text import normalize_text

    folder = lines_dir / f"book_{book}"
    return [w for f in sorted(folder.glob("*.gt.txt")) for w in normalize_text(f.read_text(encoding="utf-8")).split()]


@pytest.fixture(scope="module")
def lines_dir(tmp_path_factory) -> Path:
    """Three books as line folders (NAME.png + NAME.gt.txt), also the text the synthetic lines are drawn from."""
    words = " ".join(CORPUS_LINES).split()
    rng = random.Random(5)
    root = tmp_path_factory.mktemp("gs") / "lines"
    for book, face in BOOKS.items():
        texts = [" ".join(rng.sample(words, WORDS_PER_LINE)) for _ in range(LINES_PER_BOOK)]
        write_line_folder(root / f"book_{book}", texts, face)
    return root


@pytest.fixture(scope="module")
def real_arrays(lines_dir, tmp_path_factory) -> Path:
    from training import preprocess
    from training.model import PRESETS

    out = tmp_path_factory.mktemp("real")
    preprocess.main([str(lines_dir), "--out", str(out), "--height", str(PRESETS["tiny"].height), "--workers", "1"])
    return out


@pytest.fixture(scope="module")
def parity_arrays(lines_dir, tmp_path_factory) -> Path:
    """A few of the lines for export's parity check (each line through Keras alone: seconds for 16)."""
    from training import preprocess
    from training.model import PRESETS

    out = tmp_path_factory.mktemp("parity")
    preprocess.main([str(lines_dir), "--out", str(out), "--height", str(PRESETS["tiny"].height), "--max-lines", "4",
                     "--workers", "1"])
    return out


@pytest.fixture(scope="module")
def series(lines_dir, real_arrays, tmp_path_factory):
    """Folds Alpha and Beta trained by loo-gpu.sh, and Gamma's run stopped after epoch 1 of 2 (killed mid-epoch 2)."""
    out = tmp_path_factory.mktemp("series")
    result = loo_gpu(real_arrays, lines_dir, out, "Alpha", "Beta", "--", *TRAIN_ARGS)
    cut = out / "Gamma" / "run"
    args = [*TRAIN_ARGS[:2], "--epochs", "2", "--steps-per-epoch", "20", *TRAIN_ARGS[6:]]
    training = subprocess.Popen([sys.executable, "-m", "training.train_torch", "--data", str(real_arrays),
                                 "--val-source", "Gamma", "--out", str(cut), "--progress-every", "1", *args],
                                cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    # Epoch 2's first progress line comes after epoch 1's last.pt and run.json are written; 19 steps remain.
    for line in training.stdout:
        if line.startswith("  epoch 2 step"):
            training.send_signal(signal.SIGKILL)
            break
    training.wait(timeout=60)
    assert len(json.loads((cut / "run.json").read_text(encoding="utf-8"))["val_cer"]) == 1
    return out, result


# -- scripts/loo-gpu.sh ------------------------------------------------------------

def test_loo_gpu_trains_every_fold_on_lines_without_its_book(series, lines_dir):
    from training.shards import read_split

    out, result = series
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all 2 folds finished" in result.stdout
    for book in ("Alpha", "Beta"):
        run = out / book / "run"
        assert {"last.pt", "run.json", "history.csv"} <= {p.name for p in run.iterdir()}
        record = json.loads((run / "run.json").read_text(encoding="utf-8"))
        assert record["args"]["val_source"] == book and record["args"]["epochs"] == 1
        assert len(record["val_cer"]) == 1 and record["lines"]["val"] == 4
        assert not (out / book / "synth").exists()  # only the arrays are kept, and how they were rendered
        rendered = json.loads((out / book / "synth.json").read_text(encoding="utf-8"))
        assert rendered["exclude_corpus"] == [book] and rendered["lines"] == 24
        assert rendered["eulogy_ligature_rate"] == 0
        synthetic = [line.text for line in read_split(out / book / "synth-arrays", "train")]
        assert len(synthetic) == 24
        shared = {other: lines_sharing_runs(synthetic, book_words(lines_dir, other))[0] for other in BOOKS}
        # The held-out book's text was left out; the other books' text was drawn from (so the check could see it).
        assert shared[book] == 0, shared
        assert all(shared[other] for other in BOOKS if other != book), shared


def test_loo_gpu_names_every_failed_fold_and_trains_the_others(lines_dir, real_arrays, tmp_path):
    # txt: its exclusion leaves synth no text at all; Nowhere: no line of the real data is its, so training
    # has nothing to validate on.
    out = tmp_path / "out"
    result = loo_gpu(real_arrays, lines_dir, out, "txt", "Beta", "Nowhere", "--", *TRAIN_ARGS)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "txt: FAILED making its synthetic lines" in result.stderr
    assert "the text corpus is empty" in (out / "txt" / "synth.log").read_text(encoding="utf-8")
    assert "Nowhere: training FAILED" in result.stderr
    assert "no validation lines" in (out / "Nowhere" / "train.log").read_text(encoding="utf-8")
    assert "FAILED: txt Nowhere" in result.stderr
    record = json.loads((out / "Beta" / "run" / "run.json").read_text(encoding="utf-8"))
    assert record["args"]["val_source"] == "Beta" and len(record["val_cer"]) == 1
    assert not (out / "Nowhere" / "run" / "last.pt").exists()


def test_loo_gpu_passes_synth_args_to_every_folds_rendering(lines_dir, real_arrays, tmp_path):
    """SYNTH_ARGS: a candidate recipe's synthetic-line options (the eulogy glyph, say), recorded per fold."""
    out = tmp_path / "out"
    result = loo_gpu(real_arrays, lines_dir, out, "Beta", "--", *TRAIN_ARGS,
                     SYNTH_ARGS="--eulogy-ligature-rate 0.5 --fonts Amiri-Regular")
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = json.loads((out / "Beta" / "synth.json").read_text(encoding="utf-8"))
    assert rendered["eulogy_ligature_rate"] == 0.5 and rendered["fonts"] == ["Amiri-Regular"]
    assert rendered["exclude_corpus"] == ["Beta"]


def test_collect_takes_each_series_weights_without_optimizer_state_and_their_records(series, tmp_path):
    """scripts/gpu/collect.sh: what comes back from the GPU machine (weights small enough to carry, records)."""
    import tarfile

    import torch

    out, _ = series
    dest = tmp_path / "back"
    env = {**os.environ, "W": str(out.parent), "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(REPO / "scripts" / "gpu" / "collect.sh"), str(dest), out.name], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    for book in ("Alpha", "Beta", "Gamma"):
        weights = torch.load(dest / f"{out.name}-{book}.pt", map_location="cpu", weights_only=True)
        assert "optimizer" not in weights and "model" in weights
    with tarfile.open(dest / "records.tgz") as records:
        names = records.getnames()
    assert f"{out.name}/Alpha/run/run.json" in names and f"{out.name}/Alpha/synth.json" in names
    assert not [n for n in names if n.endswith((".pt", ".npz", ".png"))]


def test_loo_gpu_refuses_real_arrays_without_a_manifest(lines_dir, tmp_path):
    result = loo_gpu(tmp_path, lines_dir, tmp_path / "out", "Alpha", "--", *TRAIN_ARGS)
    assert result.returncode == 2 and "no manifest.json with input_height" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(__import__("training.machine").machine.native_bf16() is not False,
                    reason="only a CPU without AVX512-BF16 or AMX (Linux flags) refuses bf16")
def test_loo_gpu_refuses_bf16_on_a_cpu_that_would_emulate_it_before_rendering(lines_dir, real_arrays, tmp_path):
    result = loo_gpu(real_arrays, lines_dir, tmp_path / "out", "Alpha", "--", *TRAIN_ARGS, "--precision", "bf16")
    assert result.returncode == 2 and "use --precision fp32" in result.stderr
    assert not (tmp_path / "out").exists()  # nothing rendered


# -- training.loo_finish ----------------------------------------------------------------

def loo_finish(out: Path, lines: Path, parity: Path, *extra: str) -> int:
    from training import loo_finish

    return loo_finish.main([str(out), str(lines), "--parity-data", str(parity),
                            "--corpus", str(REPO / "datasets" / "corpus"), "--threads", "1", *extra])


FOLD_STEPS = ("run/last.keras", "model/loo-{book}.onnx", "evaluation/evaluation.json")


def step_times(out: Path, book: str) -> list[int]:
    return [(out / book / step.format(book=book)).stat().st_mtime_ns for step in FOLD_STEPS]


@pytest.fixture(scope="module")
def finished(series, lines_dir, parity_arrays):
    pytest.importorskip("tensorflow")
    out, _ = series
    # Delta: a book of the series whose fold has not been trained at all yet
    assert loo_finish(out, lines_dir, parity_arrays, "--planned", "Alpha", "Beta", "Gamma", "Delta") == 0
    return out


def test_loo_finish_sums_up_the_finished_folds_and_leaves_out_the_stopped_one(finished):
    from training.model_card import _unsteered

    summary = json.loads((finished / "summary.json").read_text(encoding="utf-8"))
    assert [r["book"] for r in summary["per_fold"]] == ["Alpha", "Beta"]
    assert summary["unfinished"] == {"Gamma": "1 of 2 epochs"}
    assert summary["not_trained"] == ["Delta"]
    assert summary["folds"] == 4 and summary["folds_finished"] == 2 and not summary["mixed_recipes"]
    for row in summary["per_fold"]:
        book = row["book"]
        assert row["source"] == f"lines/book_{book}" and row["lines"] == LINES_PER_BOOK
        assert row["epochs"] == 1 and row["recipe"]["epochs"] == 1 and "val_source" not in row["recipe"]
        # The held-out book's long lines share no run of words with the fold's corpus (its text was left out).
        assert row["corpus_check"] == [0, LINES_PER_BOOK]
        results = json.loads(Path(row["evaluation"]).read_text(encoding="utf-8"))["results"]
        assert row["cer"] == results[row["source"]]["cer"]
        assert f"{book}={row['evaluation']}" in summary["model_card_arguments"]
        # The exported model says which book it was validated on, and that the run trained all its epochs.
        exported = json.loads((finished / book / "model" / f"loo-{book}.json").read_text(encoding="utf-8"))
        real = json.loads(exported["training_data"])["real"][0]
        assert set(real["val"]) == {row["source"]} and row["source"] not in real["train"]
        state = json.loads((finished / book / "run" / "state.json").read_text(encoding="utf-8"))
        assert state["stop_reason"] == "epochs done" and _unsteered(state)
    assert summary["mean_cer"] == pytest.approx(sum(r["cer"] for r in summary["per_fold"]) / 2, abs=1e-5)
    assert (finished / "loo-cer.png").stat().st_size > 0
    assert not any((finished / "Gamma").glob("**/*.keras")) and not (finished / "Gamma" / "evaluation").exists()


def test_a_stopped_run_converted_says_it_was_interrupted(finished, tmp_path):
    from training import torch_to_keras
    from training.model_card import _unsteered

    assert torch_to_keras.main([str(finished / "Gamma" / "run" / "last.pt"), "--out", str(tmp_path / "c.keras")]) == 0
    state = json.loads((tmp_path / "state.json").read_text(encoding="utf-8"))
    assert state["stop_reason"] == "interrupted after epoch 1 of 2" and not _unsteered(state)


def test_loo_finish_redoes_a_fold_whose_run_trained_on(finished, lines_dir, real_arrays, parity_arrays, tmp_path):
    out = tmp_path / "series"
    shutil.copytree(finished, out)  # times kept: the steps are as done
    before = {book: step_times(out, book) for book in ("Alpha", "Beta")}
    assert loo_finish(out, lines_dir, parity_arrays) == 0
    assert {book: step_times(out, book) for book in ("Alpha", "Beta")} == before  # done steps not done again
    # Alpha trained on: the same command again with more epochs resumes its run from last.pt.
    result = loo_gpu(real_arrays, lines_dir, out, "Alpha", "--", *TRAIN_ARGS[:2], "--epochs", "2", *TRAIN_ARGS[4:])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "resuming" in (out / "Alpha" / "train.log").read_text(encoding="utf-8")
    assert loo_finish(out, lines_dir, parity_arrays) == 0
    redone = step_times(out, "Alpha")
    assert all(new > old for new, old in zip(redone, before["Alpha"]))
    assert redone[0] > (out / "Alpha" / "run" / "last.pt").stat().st_mtime_ns
    assert step_times(out, "Beta") == before["Beta"]
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert [(r["book"], r["epochs"]) for r in summary["per_fold"]] == [("Alpha", 2), ("Beta", 1)]
    assert summary["mixed_recipes"]  # Alpha's 2 epochs against Beta's 1


def test_loo_finish_refuses_a_book_matching_several_evaluated_sources(finished, lines_dir, parity_arrays, tmp_path):
    lines = tmp_path / "lines"
    shutil.copytree(lines_dir, lines)
    shutil.copytree(lines_dir / "book_Beta", lines / "book_Betawi")  # a second book whose name holds "Beta"
    out = tmp_path / "series"
    shutil.copytree(finished / "Beta", out / "Beta", ignore=shutil.ignore_patterns("evaluation"))
    with pytest.raises(SystemExit, match="2 evaluated sources"):
        loo_finish(out, lines, parity_arrays)
    assert not (out / "summary.json").exists()


def test_loo_finish_counts_a_recorded_fold_as_measured_and_refuses_one_also_trained(finished, lines_dir, parity_arrays,
                                                                                      tmp_path):
    # Alpha was finished in an "earlier session": its model is gone, its run.json and evaluation.json were kept.
    records = tmp_path / "records" / "Alpha"
    records.mkdir(parents=True)
    shutil.copy(finished / "Alpha" / "run" / "run.json", records / "run.json")
    shutil.copy(finished / "Alpha" / "evaluation" / "evaluation.json", records / "evaluation.json")
    out = tmp_path / "series"
    shutil.copytree(finished / "Beta", out / "Beta")
    assert loo_finish(out, lines_dir, parity_arrays, "--recorded", str(records), "--planned", "Alpha", "Beta",
                      "Delta") == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    before = json.loads((finished / "summary.json").read_text(encoding="utf-8"))
    assert [r["book"] for r in summary["per_fold"]] == ["Alpha", "Beta"]
    assert summary["per_fold"][0]["cer"] == before["per_fold"][0]["cer"]
    assert summary["per_fold"][0]["evaluation"] == str(records / "evaluation.json")
    assert summary["per_fold"][0]["corpus_check"] == [0, LINES_PER_BOOK]
    assert summary["folds"] == 3 and summary["not_trained"] == ["Delta"] and not summary["mixed_recipes"]
    assert not (out / "Alpha").exists()  # nothing converted, exported or evaluated for it
    # A book both trained here and given as recorded: which would be its figure? Refused.
    shutil.copytree(finished / "Alpha", out / "Alpha")
    assert loo_finish(out, lines_dir, parity_arrays, "--recorded", str(records)) == 2
    # A record of a run that stopped before its epochs is no finished fold.
    gamma = tmp_path / "records" / "Gamma"
    gamma.mkdir()
    shutil.copy(finished / "Gamma" / "run" / "run.json", gamma / "run.json")
    shutil.copy(records / "evaluation.json", gamma / "evaluation.json")
    with pytest.raises(SystemExit, match="trained 1 of 2 epochs"):
        loo_finish(tmp_path / "empty", lines_dir, parity_arrays, "--recorded", str(gamma))


def test_folds_trained_on_a_gpu_and_on_a_cpu_in_bf16_are_one_recipe_told_apart(finished, lines_dir, parity_arrays,
                                                                               tmp_path, capsys):
    # Alpha as an earlier session's GPU fold (no --precision then: fp32, TF32 on the GPU), Beta trained here in bf16.
    records = tmp_path / "records" / "Alpha"
    records.mkdir(parents=True)
    run = json.loads((finished / "Alpha" / "run" / "run.json").read_text(encoding="utf-8"))
    del run["args"]["precision"]
    run["args"].update(device="cuda", workers=6, progress_every=200)
    run["machine"] = {"gpu": "NVIDIA H100 80GB HBM3", "cpu": "Intel(R) Xeon(R) Processor", "cpu_cores": 16}
    (records / "run.json").write_text(json.dumps(run), encoding="utf-8")
    shutil.copy(finished / "Alpha" / "evaluation" / "evaluation.json", records / "evaluation.json")
    out = tmp_path / "series"
    shutil.copytree(finished / "Beta", out / "Beta")
    beta = out / "Beta" / "run" / "run.json"
    run = json.loads(beta.read_text(encoding="utf-8"))
    run["args"]["precision"] = "bf16"
    beta.write_text(json.dumps(run), encoding="utf-8")
    capsys.readouterr()
    assert loo_finish(out, lines_dir, parity_arrays, "--recorded", str(records)) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert not summary["mixed_recipes"]
    on = {r["book"]: r["trained_on"] for r in summary["per_fold"]}
    assert on["Alpha"] == "NVIDIA H100 80GB HBM3, TF32"
    assert re.search(r", 1 thread of \d+ cores, bf16$", on["Beta"]), on["Beta"]  # the fixture trains on one thread
    printed = capsys.readouterr().out
    assert "trained on" in printed and "TF32" in printed and "bf16" in printed
    # Another learning rate is another recipe, whatever the machine.
    run["args"]["lr"] *= 2
    beta.write_text(json.dumps(run), encoding="utf-8")
    assert loo_finish(out, lines_dir, parity_arrays, "--recorded", str(records)) == 0
    assert json.loads((out / "summary.json").read_text(encoding="utf-8"))["mixed_recipes"]


def test_render_only_renders_and_a_second_series_trains_on_those_lines(lines_dir, real_arrays, tmp_path):
    """RENDER_ONLY=1 renders every series' lines before any trains; a fold whose arrays are there (a link to
    another series' folder) trains on them without rendering."""
    first, second = tmp_path / "first", tmp_path / "second"
    rendered = loo_gpu(real_arrays, lines_dir, first, "Beta", "--", *TRAIN_ARGS, RENDER_ONLY="1")
    assert rendered.returncode == 0, rendered.stdout + rendered.stderr
    assert "RENDER_ONLY: not training" in rendered.stdout
    assert (first / "Beta" / "synth-arrays" / "manifest.json").exists() and not (first / "Beta" / "run").exists()
    (second / "Beta").mkdir(parents=True)
    (second / "Beta" / "synth-arrays").symlink_to(first / "Beta" / "synth-arrays")
    trained = loo_gpu(real_arrays, lines_dir, second, "Beta", "--", *TRAIN_ARGS)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "rendering" not in trained.stdout and not (second / "Beta" / "synth.log").exists()
    assert "Beta: WARNING its synthetic lines have no synth.json" in trained.stderr  # linked without it: said
    assert (second / "Beta" / "run" / "last.pt").exists()


def test_a_fold_recorded_before_ema_existed_is_the_recipe_of_a_fold_trained_with_ema_zero():
    """Kept records from before train_torch had --ema lack the key: the same recipe as --ema 0, not a mixed one."""
    from training.loo_finish import fold_recipe

    before = {"epochs": 20, "lr": 0.001, "val_source": "A", "device": "cuda", "precision": "fp32"}
    after = {**before, "val_source": "B", "ema": 0.0, "device": "cpu", "precision": "bf16", "threads": 1}
    assert fold_recipe(before) == fold_recipe(after) == {"epochs": 20, "lr": 0.001, "ema": 0.0}
    assert fold_recipe({**after, "ema": 0.999}) != fold_recipe(before)
