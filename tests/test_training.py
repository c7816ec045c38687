"""Training, export and evaluation on rendered lines (seconds, tiny model)."""

import json

import numpy as np
import pytest

from training import evaluate, train
from training.export import ParityError, assert_parity, check_parity, convert
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
    assert model([x, np.array([37 * WIDTH_STRIDE, 5], np.int32)]).shape == (2, 37, 10)


def test_padding_is_invisible_to_the_keras_model():
    """A line beside one ten times wider gives the same output as alone (masked convs and LSTMs)."""
    model = build_model(PRESETS["tiny"], num_classes=10)
    rng = np.random.default_rng(1)
    line = rng.random((32, 61)).astype(np.float32)
    alone = np.zeros((1, 32, 64, 1), np.float32)
    alone[0, :, :61, 0] = line
    batch = np.zeros((2, 32, 640, 1), np.float32)
    batch[0, :, :61, 0] = line
    batch[1, :, :, 0] = rng.random((32, 640))
    expected = model([alone, np.array([61], np.int32)]).numpy()[0]
    got = model([batch, np.array([61, 640], np.int32)]).numpy()[0, :16]
    masked_difference = np.abs(got - expected).max()
    unmasked = model([batch, np.array([640, 640], np.int32)]).numpy()[0, :16]
    # A random model's outputs are near uniform, so compare against what the padding does unmasked.
    assert masked_difference < 1e-6 < 10 * masked_difference + 1e-6 < np.abs(unmasked - expected).max()


def test_export_parity_check_fails_loudly_on_disagreement(tiny_run):
    from training.checkpoint import load_model

    model = load_model(tiny_run / "best.keras")
    proto = convert(model, PRESETS["tiny"], model.output_shape[-1])
    rng = np.random.default_rng(0)
    lines = [rng.random((32, w)).astype(np.float32) for w in (64, 13, 650)]
    assert check_parity(model, proto.SerializeToString(), lines) < 1e-4
    other = build_model(PRESETS["tiny"], model.output_shape[-1])  # different (random) weights
    with pytest.raises(ParityError, match="disagree"):
        assert_parity(other, proto.SerializeToString(), lines)


def test_onnx_lstms_get_sequence_lengths_from_the_widths_input(tiny_model):
    import onnx

    graph = onnx.load(str(tiny_model)).graph
    assert [i.name for i in graph.input] == ["image", "widths"]
    lstms = [n for n in graph.node if n.op_type == "LSTM"]
    assert lstms and all(n.input[4] == "sequence_lengths" for n in lstms)


def test_checkpoints_carry_their_alphabet_and_architecture(tiny_run, tmp_path):
    import shutil

    from training.checkpoint import read_info

    state = json.loads((tiny_run / "state.json").read_text(encoding="utf-8"))
    lone = tmp_path / "lone.keras"  # nothing beside it: no .onnx, no .json
    shutil.copyfile(tiny_run / "best.keras", lone)
    alphabet, config = read_info(lone)
    assert list(alphabet.characters) == state["alphabet"]
    assert config == PRESETS["tiny"]


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
    confidence = result["confidence"]["all"]
    assert confidence["lines"] == 52 and 0.0 <= confidence["line_ece"] <= 1.0
    assert confidence["error_share_best_possible"] >= confidence["error_share_lowest_10pct"]
    assert (out / "reliability.png").stat().st_size > 1000


def test_scores_count_harakat_only_in_the_raw_cer():
    from recognition.line_data import LineSample

    sample = LineSample(image_path=None, text="كتب", source="s")
    table, _ = evaluate.score([sample], ["كتـب"])
    assert table["all"]["cer"] == pytest.approx(1 / 3, abs=1e-4)
    assert table["all"]["cer_no_harakat_tatweel"] == 0.0


def test_scores_set_spacing_at_punctuation_aside_only_in_their_own_cer():
    """« word » . against «word».: an edition's spacing convention, not a misread letter."""
    from recognition.line_data import LineSample

    sample = LineSample(image_path=None, text="قال : « الحبج » .", source="s")
    table, _ = evaluate.score([sample], ["قال: «الحبج»."])
    assert table["all"]["cer"] == pytest.approx(4 / 17, abs=1e-4)
    assert table["all"]["cer_no_punctuation_spacing"] == 0.0
    other, _ = evaluate.score([sample], ["قال : « الحج » ."])  # a letter missed still counts
    assert other["all"]["cer_no_punctuation_spacing"] == pytest.approx(1 / 12, abs=1e-4)
    assert evaluate.tight_punctuation("سنة (5) ، [ 601 ] وقال") == "سنة(5)،[601]وقال"


def test_finetune_grows_the_alphabet_and_keeps_old_weights(tiny_model, tmp_path):

    from recognition.alphabet import Alphabet
    from training.checkpoint import load_model
    from training.finetune import base_alphabet, load_for_finetuning

    keras_path = tiny_model.with_suffix(".keras")
    old = base_alphabet(keras_path)
    grown_alphabet = old.extended(["ڤ٣"])
    assert grown_alphabet.num_classes == old.num_classes + 2
    original = load_model(keras_path)
    keras_path.with_suffix(".json").unlink(missing_ok=True)  # the sidecar is optional now
    grown = load_for_finetuning(keras_path, grown_alphabet)
    assert grown.output_shape[-1] == grown_alphabet.num_classes
    kernel, bias = original.get_layer("logits").get_weights()
    new_kernel, new_bias = grown.get_layer("logits").get_weights()
    np.testing.assert_array_equal(new_kernel[:, : kernel.shape[1]], kernel)
    np.testing.assert_array_equal(new_bias[: bias.shape[0]], bias)
    for layer in original.layers:
        if layer.weights and layer.name != "logits":
            for a, b in zip(layer.get_weights(), grown.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError):
        load_for_finetuning(keras_path, Alphabet(tuple(reversed(old.characters))))


def test_a_different_layout_starts_from_the_layers_that_fit(tiny_model):
    """The swift model keeps v2's convolutions and first BiLSTM: same names, same shapes, copied."""
    from dataclasses import replace

    from training.checkpoint import load_model
    from training.finetune import base_alphabet, load_for_finetuning

    keras_path = tiny_model.with_suffix(".keras")
    original = load_model(keras_path)
    deeper = replace(PRESETS["tiny"], lstm_units=(16, 16))
    model = load_for_finetuning(keras_path, base_alphabet(keras_path), deeper)
    assert [layer.name for layer in model.layers if layer.name.startswith("bilstm")] == ["bilstm0", "bilstm1"]
    for layer in original.layers:
        if layer.weights:  # every old layer fits the deeper layout (the logits see 2 x 16 features in both)
            for a, b in zip(layer.get_weights(), model.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="height"):
        load_for_finetuning(keras_path, base_alphabet(keras_path), replace(PRESETS["tiny"], height=48))


def test_train_preset_with_init_from_trains_that_layout(tiny_model, tiny_arrays, tmp_path):
    run = tmp_path / "reshaped"
    train.main(["--data", str(tiny_arrays), "--out", str(run), "--init-from", str(tiny_model.with_suffix(".keras")),
                "--preset", "fast", "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "2",
                "--min-char-count", "1", "--max-val-lines", "4"])
    state = json.loads((run / "state.json").read_text(encoding="utf-8"))
    assert state["model_config"]["lstm_units"] == list(PRESETS["fast"].lstm_units)


def test_train_init_from_continues_with_new_characters(tiny_model, tmp_path):
    from tests.conftest import write_line_folder
    from training import preprocess

    books = tmp_path / "books"
    write_line_folder(books / "new", ["ڤيينا سنة پ", "قال ڤ پ", "ثم پ ڤ"], "Amiri-Regular")
    write_line_folder(books / "held", ["قال أبو محمد"], "Amiri-Regular")
    arrays = tmp_path / "arrays"
    preprocess.main([str(books), "--out", str(arrays), "--val-source", "held", "--height", "32", "--workers", "1"])
    run = tmp_path / "finetuned"
    train.main(["--data", str(arrays), "--out", str(run), "--init-from", str(tiny_model.with_suffix(".keras")),
                "--epochs", "1", "--steps-per-epoch", "2", "--batch-size", "2", "--min-char-count", "1"])
    state = json.loads((run / "state.json").read_text(encoding="utf-8"))
    from training.checkpoint import read_info

    old = list(read_info(tiny_model.with_suffix(".keras"))[0].characters)
    assert state["alphabet"][: len(old)] == old
    assert {"ڤ", "پ"} <= set(state["alphabet"][len(old):])


def test_int8_variant_keeps_metadata_and_quantizes_the_lstms(tiny_model, tmp_path, tiny_arrays):
    import onnx

    from recognition import Recognizer
    from recognition.metrics import ErrorCounter
    from training.export import parity_lines_from, quantize_int8

    out = tmp_path / "tiny-int8.onnx"
    difference = quantize_int8(tiny_model, out, parity_lines_from([str(tiny_arrays)], 4))
    # the int8 model reads the parity lines as the float one does, give or take a few characters
    assert difference < 0.2
    float_readings = Recognizer(tiny_model).recognize_lines(parity_lines_from([str(tiny_arrays)], 4))
    int8_readings = Recognizer(out).recognize_lines(parity_lines_from([str(tiny_arrays)], 4))
    counter = ErrorCounter()
    for a, b in zip(float_readings, int8_readings):
        counter.add(a.text, b.text)
    assert difference == pytest.approx(counter.cer)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops
    recognizer = Recognizer(out)
    assert recognizer.info.name == "tiny-test-int8" and recognizer.info.input_height == 32
    assert recognizer.info.extra["quantization"].startswith("dynamic int8")


def test_cosine_schedule_decays_over_the_epochs_when_the_clock_is_generous(tiny_model, tiny_arrays, tmp_path):
    """A run planned as N epochs, with a time cap it will not reach, still ends its cosine near the floor."""
    run = tmp_path / "cosine"
    train.main(["--data", str(tiny_arrays), "--out", str(run), "--init-from", str(tiny_model.with_suffix(".keras")),
                "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "2", "--lr", "1e-3",
                "--lr-schedule", "cosine", "--max-minutes", "600", "--min-char-count", "1", "--max-val-lines", "2"])
    state = json.loads((run / "state.json").read_text(encoding="utf-8"))
    rates = [entry["lr"] for entry in state["history"]]
    assert rates[0] > rates[-1]
    assert rates[-1] < 0.2 * 1e-3
    assert state["stop_reason"] == "epochs done"


def test_exporting_the_last_checkpoint_reports_the_last_epochs_figures(tiny_run, tiny_arrays, tmp_path):
    from training.export import export_run, parity_lines_from

    history = json.loads((tiny_run / "state.json").read_text(encoding="utf-8"))["history"]
    info = export_run(tiny_run, tmp_path / "last.onnx", "last", "1", parity_lines_from([str(tiny_arrays)], 2),
                      checkpoint="last.keras")
    assert info.validation_cer == history[-1]["val_cer"]
    assert info.extra["exported_epoch"] == str(history[-1]["epoch"])
    assert info.extra["exported_checkpoint"] == "last.keras"


def _keras_trainable(path):
    from training.checkpoint import load_model
    from training.model import logits_model

    return [v.numpy() for v in logits_model(load_model(path)).trainable_variables]


def _npz(path):
    with np.load(path) as data:
        return [data[f"arr_{i}"] for i in range(len(data.files))]


@pytest.fixture(scope="module")
def ema_run(tiny_model, tiny_arrays, tmp_path_factory):
    run = tmp_path_factory.mktemp("ema")
    train.main(["--data", str(tiny_arrays), "--out", str(run), "--init-from", str(tiny_model.with_suffix(".keras")),
                "--epochs", "1", "--steps-per-epoch", "4", "--batch-size", "4", "--lr", "3e-3", "--ema", "0.9",
                "--min-char-count", "1", "--max-val-lines", "6", "--no-augment"])
    return run


def test_an_ema_run_validates_and_saves_the_average_and_keeps_the_trained_weights(ema_run, tiny_arrays):
    from recognition.alphabet import Alphabet
    from training.checkpoint import load_model
    from training.shards import read_split

    state = json.loads((ema_run / "state.json").read_text(encoding="utf-8"))
    assert state["ema_momentum"] == 0.9
    saved, trained = _keras_trainable(ema_run / "last.keras"), _npz(ema_run / train.TRAINED_WEIGHTS)
    assert len(saved) == len(trained)
    assert any(not np.allclose(a, b) for a, b in zip(saved, trained))  # four steps apart: an average, not a copy
    # The CER in the history is the saved (averaged) model's, not the trained weights'.
    alphabet = Alphabet(state["alphabet"])
    val = train.LinePool(read_split(tiny_arrays, "val")[:: max(1, len(read_split(tiny_arrays, "val")) // 6)][:6],
                         alphabet, "val")
    counter = train.evaluate_pool(train.Trainer(load_model(ema_run / "last.keras"), 1e-3), val, alphabet)
    assert round(counter.cer, 5) == state["history"][-1]["val_cer"]


def test_a_resumed_ema_run_trains_on_from_the_trained_weights_not_the_average(ema_run, tiny_arrays, tmp_path):
    import shutil

    run = tmp_path / "resumed"
    shutil.copytree(ema_run, run)
    trained_before = _npz(run / train.TRAINED_WEIGHTS)
    # A learning rate of zero leaves the trained weights where they were: had the resumed run started from
    # last.keras (the average), its trained weights would now be the old average.
    train.main(["--data", str(tiny_arrays), "--out", str(run), "--epochs", "2", "--steps-per-epoch", "2",
                "--batch-size", "4", "--lr", "0", "--lr-schedule", "cosine", "--min-char-count", "1",
                "--max-val-lines", "6", "--no-augment"])
    state = json.loads((run / "state.json").read_text(encoding="utf-8"))
    assert [h["epoch"] for h in state["history"]] == [1, 2] and state["ema_momentum"] == 0.9
    for before, after in zip(trained_before, _npz(run / train.TRAINED_WEIGHTS)):
        np.testing.assert_array_equal(before, after)


def test_sessions_end_at_epoch_boundaries_without_changing_the_run(tiny_arrays, tmp_path):
    """Two sessions of one epoch each give the steps and learning rates of one uninterrupted run."""
    common = ["--data", str(tiny_arrays), "--preset", "tiny", "--epochs", "2", "--steps-per-epoch", "3",
              "--batch-size", "8", "--no-augment", "--min-char-count", "1", "--lr-schedule", "cosine",
              "--patience", "2"]
    train.main([*common, "--out", str(tmp_path / "whole")])
    split = tmp_path / "split"
    train.main([*common, "--out", str(split), "--session-minutes", "0"])
    first = json.loads((split / "state.json").read_text(encoding="utf-8"))
    assert first["epoch"] == 1 and first["stop_reason"].startswith("session of 0 minutes over")
    train.main([*common, "--out", str(split), "--session-minutes", "0"])
    whole = json.loads((tmp_path / "whole" / "state.json").read_text(encoding="utf-8"))
    resumed = json.loads((split / "state.json").read_text(encoding="utf-8"))
    assert resumed["stop_reason"] == "epochs done"
    assert [(h["epoch"], h["step"]) for h in resumed["history"]] == [(1, 3), (2, 6)]
    assert [h["lr"] for h in resumed["history"]] == pytest.approx([h["lr"] for h in whole["history"]])


@pytest.mark.parametrize("momentum", ["1", "1.5", "-0.1"])
def test_ema_momentum_outside_zero_to_one_is_refused_before_training(momentum, capsys):
    with pytest.raises(SystemExit):
        train.main(["--data", "nowhere", "--out", "nowhere", "--ema", momentum])
    assert "--ema wants a momentum in [0, 1)" in capsys.readouterr().err
