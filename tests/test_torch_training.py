"""The PyTorch twin of the CRNN (``training.torch_crnn``), its training loop and the way back to Keras."""

import csv
import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from training import train_torch  # noqa: E402
from training.model import PRESETS, WIDTH_STRIDE, build_model, frames_for  # noqa: E402
from training.torch_crnn import TorchCRNN, copy_keras_to_torch, copy_torch_to_keras  # noqa: E402

# bf16 on a CPU that only emulates it (AVX2 only) is refused by train_torch, and oneDNN fails some bf16 LSTM calls there.
NEEDS_NATIVE_BF16 = pytest.mark.skipif(train_torch.native_bf16() is False,
                                       reason="this CPU has no AVX512-BF16 or AMX: bf16 would be emulated")

pytestmark = pytest.mark.slow


def padded_lines(height: int, widths: list[int], seed: int = 0):
    """A zero-padded batch of random lines (padded width a multiple of the stride) and their widths."""
    rng = np.random.default_rng(seed)
    x = np.zeros((len(widths), height, -(-max(widths) // WIDTH_STRIDE) * WIDTH_STRIDE, 1), np.float32)
    for i, w in enumerate(widths):
        x[i, :, :w, 0] = rng.random((height, w))
    return x, np.array(widths, np.int32)


def torch_probs(model, x, widths) -> np.ndarray:
    model.eval()
    with torch.no_grad():
        return model.probs(torch.from_numpy(x), torch.from_numpy(widths)).numpy()


def valid_difference(a: np.ndarray, b: np.ndarray, widths) -> float:
    return max(float(np.abs(a[i, : frames_for(w)] - b[i, : frames_for(w)]).max()) for i, w in enumerate(widths))


def randomise_batchnorm(keras_model, rng) -> None:
    """Moving statistics far from their start, so a copy that dropped them would show."""
    for layer in keras_model.layers:
        if layer.name.endswith("_bn"):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])


@pytest.mark.parametrize("preset", ["tiny", "accurate"])
def test_weights_copied_either_way_give_the_keras_probabilities(preset):
    config = PRESETS[preset]
    x, widths = padded_lines(config.height, [61, 250, 13, 130])  # padding, and widths not multiples of 4
    keras_model = build_model(config, num_classes=12)
    randomise_batchnorm(keras_model, np.random.default_rng(3))
    twin = TorchCRNN(config, 12)
    copy_keras_to_torch(keras_model, twin)
    assert valid_difference(keras_model([x, widths]).numpy(), torch_probs(twin, x, widths), widths) < 1e-5

    torch.manual_seed(1)
    trained_here = TorchCRNN(config, 12)  # its own (Keras-like) random weights
    back = build_model(config, num_classes=12)
    copy_torch_to_keras(trained_here, back)
    assert valid_difference(back([x, widths]).numpy(), torch_probs(trained_here, x, widths), widths) < 1e-5


def test_the_torch_model_reads_a_line_alike_alone_and_in_a_padded_batch():
    config = PRESETS["tiny"]
    torch.manual_seed(0)
    model = TorchCRNN(config, 10)
    x, widths = padded_lines(config.height, [61, 640], seed=1)
    alone = x[:1, :, :64]
    expected = torch_probs(model, alone, widths[:1])[0]
    got = torch_probs(model, x, widths)[0, : expected.shape[0]]
    unmasked = torch_probs(model, x, np.array([640, 640], np.int32))[0, : expected.shape[0]]
    masked_difference = np.abs(got - expected).max()
    assert masked_difference < 1e-6 < 10 * masked_difference + 1e-6 < np.abs(unmasked - expected).max()


def test_the_bidirectional_lstm_gives_a_packed_sequences_outputs_and_gradients():
    """Each direction reads only its line's frames, as packed sequences do, without packing (3x on a CPU)."""
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    from training.torch_crnn import bidirectional_lstm, reversal_index

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 5, batch_first=True, bidirectional=True)
    lengths = torch.tensor([9, 3, 1, 7])
    x = torch.randn(4, 9, 6, requires_grad=True)
    weights = torch.randn(4, 9, 10)
    valid = (torch.arange(9)[None, :] < lengths[:, None])[:, :, None]

    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    expected = pad_packed_sequence(lstm(packed)[0], batch_first=True, total_length=9)[0]
    expected_grads = torch.autograd.grad((expected * weights * valid).sum(), [x, *lstm.parameters()])
    got = bidirectional_lstm(lstm, x, reversal_index(lengths, 9))
    grads = torch.autograd.grad((got * weights * valid).sum(), [x, *lstm.parameters()])

    assert torch.allclose((got * valid), expected, atol=1e-6)
    for g, e in zip(grads, expected_grads):
        assert torch.allclose(g, e, atol=1e-5)
    # a line's reversed frames leave its padding where it was
    assert reversal_index(torch.tensor([3]), 5).tolist() == [[2, 1, 0, 3, 4]]


@NEEDS_NATIVE_BF16
def test_the_bidirectional_lstm_under_bf16_autocast_stays_near_fp32():
    from training.torch_crnn import bidirectional_lstm, reversal_index

    torch.manual_seed(0)
    lstm = torch.nn.LSTM(6, 5, batch_first=True, bidirectional=True)
    lengths, x = torch.tensor([9, 4]), torch.randn(2, 9, 6)
    reverse = reversal_index(lengths, 9)
    exact = bidirectional_lstm(lstm, x, reverse)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = bidirectional_lstm(lstm, x, reverse)
    valid = (torch.arange(9)[None, :] < lengths[:, None])[:, :, None]
    assert float(((fast.float() - exact) * valid).abs().max()) < 0.02


def test_batch_norm_keeps_keras_moving_average_of_the_biased_variance():
    from training.torch_crnn import BN_MOMENTUM, KerasBatchNorm

    torch.manual_seed(0)
    norm = KerasBatchNorm(3).train()
    x = torch.randn(2, 3, 4, 5) * torch.tensor([1.0, 3.0, 0.5])[None, :, None, None] + 2
    y = norm(x)
    var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
    assert torch.allclose(norm.running_mean, (1 - BN_MOMENTUM) * mean, atol=1e-6)
    assert torch.allclose(norm.running_var, BN_MOMENTUM + (1 - BN_MOMENTUM) * var, atol=1e-6)
    assert torch.allclose(y, (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + 1e-3),
                          atol=1e-5)


def test_each_gradient_is_clipped_on_its_own_as_keras_clipnorm():
    from training.train_torch import clip_each_gradient

    big, small = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    big.grad, small.grad = torch.tensor([30.0, 40.0, 0.0]), torch.tensor([0.3, 0.4])
    clip_each_gradient([big, small], 5.0)
    assert torch.allclose(big.grad, torch.tensor([3.0, 4.0, 0.0]))
    assert torch.allclose(small.grad, torch.tensor([0.3, 0.4]))  # left alone: the global norm is no concern


TRAIN_ARGS = ["--preset", "tiny", "--batch-size", "8", "--lr", "3e-3", "--no-augment", "--min-char-count", "1",
              "--threads", "1", "--device", "cpu", "--steps-per-epoch", "12", "--progress-every", "5"]


@pytest.fixture(scope="module")
def torch_run(tiny_arrays, tmp_path_factory):
    from training import train_torch

    run = tmp_path_factory.mktemp("torch-run")
    assert train_torch.main(["--data", str(tiny_arrays), "--out", str(run), "--epochs", "3", *TRAIN_ARGS]) == 0
    return run


def test_torch_training_writes_its_run_and_its_loss_falls(torch_run):
    for name in ("last.pt", "history.csv", "run.json"):
        assert (torch_run / name).exists(), name
    with (torch_run / "history.csv").open() as f:
        history = list(csv.DictReader(f))
    losses = [float(h["train_loss"]) for h in history]
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0], losses  # cosine-decayed: falls slower than plateau
    run = json.loads((torch_run / "run.json").read_text(encoding="utf-8"))
    assert run["lines"]["val"] > 0 and run["lines"]["real"] > 0 and run["alphabet_size"] > 10
    assert len(run["val_cer"]) == 3 and run["machine"]["torch"] == torch.__version__


def test_torch_training_resumes_from_last_pt(torch_run, tiny_arrays, tmp_path, caplog):
    from training import train_torch

    run = tmp_path / "resumed"
    shutil.copytree(torch_run, run)
    assert train_torch.main(["--data", str(tiny_arrays), "--out", str(run), "--epochs", "4", *TRAIN_ARGS]) == 0
    # train.py's warning, shared: the held-out book has characters the training texts never had ("!", "؟", ...)
    warning = next(r.getMessage() for r in caplog.records if "cannot output" in r.getMessage())
    assert "!" in warning and "؟" in warning
    with (run / "history.csv").open() as f:
        history = list(csv.DictReader(f))
    assert [int(h["epoch"]) for h in history] == [1, 2, 3, 4]
    assert int(history[3]["step"]) == int(history[2]["step"]) + 12


@NEEDS_NATIVE_BF16
def test_bf16_training_learns_and_keeps_fp32_weights(tiny_arrays, tmp_path):
    """--precision bf16 (autocast on the CPU) is a faster forward pass, not another model: the weights, the
    optimizer state and the run's record stay fp32 and say how it was trained."""
    from training import train_torch

    run = tmp_path / "bf16"
    assert train_torch.main(["--data", str(tiny_arrays), "--out", str(run), "--epochs", "3", *TRAIN_ARGS,
                             "--precision", "bf16"]) == 0
    with (run / "history.csv").open() as f:
        losses = [float(h["train_loss"]) for h in csv.DictReader(f)]
    assert losses[-1] < 0.8 * losses[0], losses
    checkpoint = train_torch.load_checkpoint(run / "last.pt")
    assert {t.dtype for t in checkpoint["model"].values() if t.is_floating_point()} == {torch.float32}
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["args"]["precision"] == "bf16"


def test_bf16_is_refused_off_the_cpu(tiny_arrays, tmp_path):
    """CUDA's autocast would run cuDNN's LSTMs in fp16 (not bf16) with no loss scaling: not offered there."""
    from training import train_torch

    with pytest.raises(SystemExit, match="bf16 is for CPUs"):
        train_torch.main(["--data", str(tiny_arrays), "--out", str(tmp_path / "run"), "--epochs", "1", *TRAIN_ARGS,
                          "--precision", "bf16", "--device", "meta"])
    assert not (tmp_path / "run" / "last.pt").exists()


def test_the_random_state_round_trips_through_last_pt_on_a_cpu_only_machine(torch_run):
    from training.train_torch import load_checkpoint, restore_rng_states, rng_states

    checkpoint = load_checkpoint(torch_run / "last.pt")
    assert "cuda_rng" not in checkpoint  # a CPU run has no GPU generator to save
    restore_rng_states(checkpoint, torch.device("cpu"))
    drawn = torch.rand(4)
    restore_rng_states({**checkpoint, **rng_states(torch.device("cpu"))}, torch.device("cpu"))
    assert not torch.equal(torch.rand(4), drawn)  # the state saved after drawing, not the checkpoint's
    restore_rng_states(checkpoint, torch.device("cpu"))
    assert torch.equal(torch.rand(4), drawn)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_a_gpu_runs_dropout_state_is_saved_and_restored():
    from training.train_torch import restore_rng_states, rng_states

    gpu = torch.device("cuda")
    saved = rng_states(gpu)
    drawn = torch.rand(4, device=gpu)
    torch.cuda.manual_seed(0)  # as a resumed run's torch.manual_seed(--seed) before the restore
    restore_rng_states(saved, gpu)
    assert torch.equal(torch.rand(4, device=gpu), drawn)


def test_val_source_holds_a_book_out_of_every_split(tiny_arrays):
    from training.train_torch import read_lines

    train_lines, val_lines = read_lines([str(tiny_arrays)], "book_amiri")
    assert val_lines and all("book_amiri" in l.source for l in val_lines)
    assert train_lines and not any("book_amiri" in l.source for l in train_lines)


def test_a_torch_run_becomes_an_onnx_model_the_recognizer_reads(torch_run, tiny_arrays, tmp_path):
    from recognition.recognizer import Recognizer
    from training import torch_to_keras
    from training.export import export_run, parity_lines_from

    keras_path = tmp_path / "run" / "best.keras"
    keras_path.parent.mkdir()
    assert torch_to_keras.main([str(torch_run / "last.pt"), "--out", str(keras_path)]) == 0
    onnx_path = tmp_path / "torch-tiny.onnx"
    export_run(keras_path.parent, onnx_path, "torch-tiny", "1", parity_lines_from([str(tiny_arrays)], 4))
    recognizer = Recognizer(onnx_path, threads=1)
    line = np.zeros((32, 120), np.float32)
    line[10:20, 20:100] = 1.0  # ink
    assert isinstance(recognizer.recognize_lines([line])[0].text, str)


def test_the_weight_average_follows_keras_ema():
    """First step copies the weights; each later step moves the average (1 - momentum) of the way to them."""
    from training.train_torch import WeightAverage

    weight = torch.nn.Parameter(torch.zeros(3))
    average = WeightAverage([weight], momentum=0.9)
    with torch.no_grad():
        weight.fill_(2.0)
    average.update()
    assert torch.equal(average.average[0], torch.full((3,), 2.0))
    with torch.no_grad():
        weight.fill_(12.0)
    average.update()
    assert torch.allclose(average.average[0], torch.full((3,), 3.0))
    average.swap()
    assert torch.allclose(weight.detach(), torch.full((3,), 3.0)) and torch.equal(average.average[0], torch.full((3,), 12.0))
    average.swap()
    assert torch.equal(weight.detach(), torch.full((3,), 12.0))


def test_an_ema_run_saves_the_average_as_its_model_and_resumes_with_both(tiny_arrays, tmp_path):
    from training import train_torch

    run = tmp_path / "ema"
    args = ["--data", str(tiny_arrays), "--out", str(run), *TRAIN_ARGS, "--ema", "0.9"]
    assert train_torch.main([*args, "--epochs", "2"]) == 0
    checkpoint = train_torch.load_checkpoint(run / "last.pt")
    assert checkpoint["ema_momentum"] == 0.9
    averaged, trained = checkpoint["model"], checkpoint["trained_model"]
    weights = [k for k in trained if k.endswith("weight")]
    assert any(not torch.equal(averaged[k], trained[k]) for k in weights)
    assert all(torch.equal(averaged[k], trained[k]) for k in trained if "running" in k or "moving" in k)
    with (run / "history.csv").open() as f:
        history = list(csv.DictReader(f))
    assert all(0.0 <= float(h["val_cer_trained"]) <= 2.0 for h in history)

    assert train_torch.main([*args[:-1], "0.5", "--epochs", "3"]) == 0  # another momentum: the run keeps its own
    resumed = train_torch.load_checkpoint(run / "last.pt")
    assert resumed["ema_momentum"] == 0.9 and resumed["epoch"] == 3
    assert resumed["args"]["ema"] == 0.9  # recorded as the run trains, not as the resuming command asked
    assert json.loads((run / "run.json").read_text(encoding="utf-8"))["args"]["ema"] == 0.9
    from training.torch_to_keras import run_state

    assert run_state(resumed, run / "last.pt")["ema_momentum"] == 0.9  # the model card says it is an average
    # the trained weights went on from the trained ones, not from the average
    assert any(not torch.equal(resumed["trained_model"][k], trained[k]) for k in weights)


def test_ema_is_refused_out_of_range(tiny_arrays, tmp_path):
    from training import train_torch

    with pytest.raises(SystemExit):
        train_torch.main(["--data", str(tiny_arrays), "--out", str(tmp_path / "r"), "--epochs", "1", *TRAIN_ARGS,
                          "--ema", "1.0"])
    assert not (tmp_path / "r").exists()



def test_bf16_is_refused_on_a_cpu_that_would_emulate_it(tiny_arrays, tmp_path, monkeypatch):
    """Without AVX512-BF16 or AMX, PyTorch emulates bf16: a training step ran >10x slower than fp32 on such a CPU."""
    from training import machine

    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "fma"})
    assert machine.native_bf16() is False
    monkeypatch.setattr(train_torch, "native_bf16", machine.native_bf16)
    with pytest.raises(SystemExit, match="needs a CPU with AVX512-BF16 or AMX"):
        train_torch.main(["--data", str(tiny_arrays), "--out", str(tmp_path / "run"), "--preset", "tiny",
                          "--epochs", "1", "--precision", "bf16", "--device", "cpu"])
    assert not (tmp_path / "run").exists()
    monkeypatch.setattr(machine, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert machine.native_bf16() is True
    monkeypatch.setattr(machine, "cpu_flags", lambda: None)
    assert machine.native_bf16() is None  # cannot tell: not refused


def test_the_last_epochs_models_are_kept_and_averaged_into_a_run_torch_to_keras_reads(tiny_arrays, tmp_path):
    from training import average_epochs, train_torch
    from training.torch_to_keras import run_state

    run = tmp_path / "kept"
    args = ["--data", str(tiny_arrays), "--out", str(run), *TRAIN_ARGS, "--keep-epochs", "2"]
    assert train_torch.main([*args, "--epochs", "3"]) == 0
    assert sorted(p.name for p in (run / "epochs").iterdir()) == ["epoch-002.pt", "epoch-003.pt"]
    kept = [train_torch.load_checkpoint(run / "epochs" / f"epoch-00{e}.pt")["model"] for e in (2, 3)]
    last = train_torch.load_checkpoint(run / "last.pt")
    assert all(torch.equal(kept[1][k], v) for k, v in last["model"].items())

    assert average_epochs.main([str(run), "--last", "2", "--out", str(tmp_path / "avg")]) == 0
    averaged = train_torch.load_checkpoint(tmp_path / "avg" / "last.pt")
    weight = next(k for k in kept[0] if k.endswith("weight"))
    assert not torch.equal(kept[0][weight], kept[1][weight])
    assert torch.allclose(averaged["model"][weight], (kept[0][weight] + kept[1][weight]) / 2)
    counter = next((k for k in kept[0] if not kept[0][k].is_floating_point()), None)
    if counter is not None:
        assert torch.equal(averaged["model"][counter], kept[1][counter])
    assert "optimizer" not in averaged and averaged["averaged_epochs"] == [2, 3]
    assert run_state(averaged, tmp_path / "avg" / "last.pt")["averaged_epochs"] == [2, 3]
    assert (tmp_path / "avg" / "history.csv").exists()

    assert average_epochs.main([str(run), "--last", "3", "--out", str(tmp_path / "bad")]) == 2   # epoch 1 not kept
    assert not (tmp_path / "bad" / "last.pt").exists()
    with pytest.raises(SystemExit):
        average_epochs.main([str(run), "--last", "2", "--out", str(run)])   # its own last.pt
    with pytest.raises(SystemExit):
        train_torch.main([*args[:-1], "-1", "--epochs", "4"])
