"""Training, export and evaluation on rendered lines (seconds, tiny model)."""

import json

import numpy as np
import pytest

from training import evaluate, train
from training.export import ParityError, check_parity, convert
from training.model import PRESETS, WIDTH_STRIDE, build_model, final_height

pytestmark = pytest.mark.slow


def test_loss_falls(tiny_history):
    losses = [h["train_loss"] for h in tiny_history]
    assert len(losses) == 3
    assert losses[-1] < 0.7 * losses[0], losses


def test_run_folder_has_logs_curves_and_checkpoints(tiny_run):
    for name in ("best.keras", "last.keras", "state.json", "history.csv", "curves.png", "optimizer.npz"):
        assert (tiny_run / name).exists(), name
    assert any((tiny_run / "tensorboard").iterdir())
    state = json.loads((tiny_run / "state.json").read_text(encoding="utf-8"))
    assert state["best_cer"] is not None and 0.0 <= state["best_cer"] <= 2.0
    assert state["model_config"]["height"] == 32


def test_resume_continues_from_the_checkpoint(tiny_run, tiny_arrays, tmp_path):
    import shutil

    run = tmp_path / "resumed"
    shutil.copytree(tiny_run, run)
    train.main(["--data", str(tiny_arrays), "--out", str(run), "--preset", "tiny", "--epochs", "4",
                "--steps-per-epoch", "3", "--batch-size", "8", "--no-augment", "--min-char-count", "1"])
    history = json.loads((run / "state.json").read_text(encoding="utf-8"))["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[3]["step"] == history[2]["step"] + 3


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_presets_give_one_frame_per_stride_columns(preset):
    config = PRESETS[preset]
    model = build_model(config, num_classes=10)
    assert final_height(config) >= 1
    x = np.zeros((2, config.height, 37 * WIDTH_STRIDE, 1), np.float32)
    assert model(x).shape == (2, 37, 10)


def test_export_parity_check_fails_loudly_on_disagreement(tiny_run):
    import keras

    model = keras.models.load_model(tiny_run / "best.keras", compile=False)
    proto = convert(model, 32)
    line = np.random.default_rng(0).random((32, 64)).astype(np.float32)
    assert check_parity(model, proto.SerializeToString(), [line]) < 1e-4
    other = build_model(PRESETS["tiny"], model.output_shape[-1])  # different (random) weights
    with pytest.raises(ParityError):
        from training import export

        worst = check_parity(other, proto.SerializeToString(), [line])
        if worst > export.PARITY_TOLERANCE:
            raise ParityError(worst)


def test_evaluate_writes_json_markdown_and_worst_lines(tiny_model, rendered_books, tmp_path, capsys):
    out = tmp_path / "eval"
    evaluate.main([str(tiny_model), str(rendered_books), "--out", str(out)])
    result = json.loads((out / "evaluation.json").read_text(encoding="utf-8"))
    table = result["results"]
    assert sorted(k.split("/")[-1] for k in table) == ["all", "book_amiri", "book_naskh"]
    assert table["all"]["lines"] == 52
    for row in table.values():
        assert 0.0 <= row["cer"] and row["cer_no_harakat_tatweel"] <= row["cer"] + 1e-9
    assert (out / "worst-lines.png").stat().st_size > 1000
    assert "| all | 52 |" in (out / "evaluation.md").read_text(encoding="utf-8")


def test_scores_count_harakat_only_in_the_raw_cer():
    from training.line_data import LineSample

    sample = LineSample(image_path=None, text="كتب", source="s")
    table, _ = evaluate.score([sample], ["كتـب"])
    assert table["all"]["cer"] == pytest.approx(1 / 3, abs=1e-4)
    assert table["all"]["cer_no_harakat_tatweel"] == 0.0
