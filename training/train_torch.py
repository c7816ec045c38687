"""Train the CRNN with PyTorch (a GPU machine without TensorFlow), with ``training.train``'s recipe.

    python -m training.train_torch --data data/real --val-source book_x --synth data/synth-arrays \\
        --preset accurate --epochs 12 --out runs/torch-crnn

Same data, batches (width-bucketed, real/synthetic mixed by ``--synth-ratio``, augmented), alphabet, steps
per epoch, cosine learning rate and greedy-CTC validation as ``training.train`` (its functions, not copies);
the model is ``training.torch_crnn.TorchCRNN``, Adam (eps 1e-7) with each gradient's norm clipped to 5 as
Keras' ``clipnorm`` does, CTC loss per line averaged over the batch. ``last.pt`` is written after every epoch
and a run resumes from it (run the same command again). ``python -m training.torch_to_keras RUN/last.pt
--out MODEL.keras`` turns the run into a Keras checkpoint for ``training.export`` / ``training.evaluate``.
Outputs: ``last.pt``, ``history.csv``, ``run.json``. Imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from recognition.alphabet import Alphabet
from recognition.line_data import matches_source

from .labels import DEFAULT_MIN_CHAR_COUNT
from .machine import cpu_model, native_bf16
from .model import PRESETS, ModelConfig
from .schedule import cosine_learning_rate, run_progress
from .shards import Line, read_manifest, read_split
from .torch_crnn import TorchCRNN
from .train import (
    LinePool,
    evaluate_predictions,
    line_pools,
    mixed_batches,
    training_alphabet,
    validation_sample,
)

CHECKPOINT = "last.pt"
CLIPNORM = 5.0       # Keras' clipnorm in train.py: each gradient tensor's own norm
ADAM_EPSILON = 1e-7  # Keras' Adam default


# -- data ------------------------------------------------------------------------

def read_lines(data: list[str], val_source: str | None) -> tuple[list[Line], list[Line]]:
    """(train, val) real lines: the folders' own splits, or every split with ``val_source``'s lines held out."""
    if not val_source:
        return ([l for d in data for l in read_split(Path(d), "train")],
                [l for d in data for l in read_split(Path(d), "val")])
    lines = [l for d in data for split in read_manifest(Path(d))["splits"] for l in read_split(Path(d), split)]
    # preprocess --val-source's rule, which export's description of the run and loo_finish follow too
    held_out = [matches_source(l.source, [val_source]) for l in lines]
    return [l for l, h in zip(lines, held_out) if not h], [l for l, h in zip(lines, held_out) if h]


class BatchStream(torch.utils.data.IterableDataset):
    """``train.mixed_batches`` for a DataLoader: each worker draws its own batches with its own seeded rng
    (without workers the stream is train.py's for the same seed and epoch)."""

    def __init__(self, real: LinePool, synth: LinePool, ratio: float, batch_size: int, augment: bool,
                 seed: int, epoch: int):
        super().__init__()
        self.real, self.synth, self.ratio, self.batch_size = real, synth, ratio, batch_size
        self.augment, self.seed, self.epoch = augment, seed, epoch

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        key = [self.seed, self.epoch] if info is None else [self.seed, self.epoch, info.id]
        rng = np.random.default_rng(key)
        return mixed_batches(self.real, self.synth, self.ratio, self.batch_size, rng, self.augment)


# -- training --------------------------------------------------------------------

def clip_each_gradient(parameters: list[torch.Tensor], max_norm: float) -> None:
    """Keras' ``clipnorm``: every gradient tensor scaled to at most ``max_norm`` on its own (not the global norm)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    norms = torch._foreach_norm(grads)
    scales = [max_norm / torch.clamp(n, min=max_norm) for n in norms]
    torch._foreach_mul_(grads, scales)


def ctc_loss(logits: torch.Tensor, labels: torch.Tensor, label_lengths: torch.Tensor,
             frames: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of each line's CTC loss (``tf.nn.ctc_loss`` + ``reduce_mean``), blank 0."""
    log_probs = torch.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (frames, batch, classes)
    losses = torch.nn.functional.ctc_loss(log_probs, labels, frames, label_lengths, blank=0, reduction="none",
                                          zero_infinity=True)
    return losses.mean()


def predictor(model: TorchCRNN, device: torch.device):
    @torch.no_grad()
    def predict(x: np.ndarray, widths: np.ndarray) -> np.ndarray:
        return model.probs(torch.from_numpy(x).to(device), torch.from_numpy(widths).to(device)).cpu().numpy()

    return predict


def machine(device: torch.device) -> dict:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"gpu": gpu, "cpu": cpu_model(), "cpu_cores": os.cpu_count(), "torch": str(torch.__version__),
            "python": platform.python_version()}


def machine_line(checkpoint: dict) -> str:
    """The run's machine in one line (train.py's ``state.json`` field)."""
    m = checkpoint.get("machine") or {}
    return (f"{m.get('gpu') or 'no GPU'}; {m.get('cpu') or platform.machine()}, {m.get('cpu_cores')} CPU cores; "
            f"torch {m.get('torch')}")


def save_checkpoint(path: Path, payload: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)


EPOCHS_DIR = "epochs"


def keep_epoch_model(out: Path, epoch: int, state_dict: dict, row: dict, keep: int) -> None:
    """The epoch's model (weights and buffers only, a quarter of last.pt) beside the run; only the newest
    ``keep`` stay. Averaging the last few is a cheaper, post-hoc cousin of a longer --ema."""
    folder = out / EPOCHS_DIR
    folder.mkdir(exist_ok=True)
    save_checkpoint(folder / f"epoch-{epoch:03d}.pt", {"epoch": epoch, "model": state_dict, "history_row": row})
    for old in sorted(folder.glob("epoch-*.pt"))[:-keep]:
        old.unlink()


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_states(device: torch.device) -> dict:
    """The random generators' states for ``last.pt``: the CPU's (the DataLoader workers' seeds), and on a GPU the
    device's own too, which draws the dropout masks there."""
    states = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda_rng"] = torch.cuda.get_rng_state(device)
    return states


def restore_rng_states(checkpoint: dict, device: torch.device) -> None:
    """Resume the generators where the interrupted run left them, so that it goes on as an uninterrupted one."""
    torch.set_rng_state(checkpoint["torch_rng"])
    if device.type != "cuda":
        return  # a GPU run resumed on the CPU: the CPU generator draws the dropout masks from here on
    if checkpoint.get("cuda_rng") is None:
        print("last.pt holds no GPU random state (trained on the CPU, or before it was saved): the GPU's dropout "
              "goes on from --seed, not as an uninterrupted run's", flush=True)
        return
    torch.cuda.set_rng_state(checkpoint["cuda_rng"], device)


class WeightAverage:
    """``training.train``'s ``--ema``: Keras' optimizer EMA (``use_ema``) for PyTorch. A moving average of the
    trainable weights, updated after every step (the first step copies them); the batch-norm statistics stay the
    trained model's own, as Keras' average leaves non-trainable variables alone."""

    def __init__(self, parameters: list[torch.Tensor], momentum: float):
        self.parameters, self.momentum = parameters, momentum
        self.average = [p.detach().clone() for p in parameters]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        weight = 1.0 if self.updates == 0 else 1.0 - self.momentum
        torch._foreach_lerp_(self.average, [p.detach() for p in self.parameters], weight)
        self.updates += 1

    @torch.no_grad()
    def swap(self) -> None:
        """Trade the model's weights and the average (twice: back as they were)."""
        for p, a in zip(self.parameters, self.average):
            kept = p.detach().clone()
            p.copy_(a)
            a.copy_(kept)


def write_history(out: Path, history: list[dict]) -> None:
    with (out / "history.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(history[-1]))
        w.writeheader()
        w.writerows(history)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.train_torch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, help="preprocessed real data folders")
    parser.add_argument("--val-source", metavar="BOOK",
                        help="validate on the lines (of every split) whose source contains BOOK, train on all "
                             "others; default: the folders' own val / train splits")
    parser.add_argument("--synth", nargs="*", default=[], help="preprocessed synthetic data folders (train split)")
    parser.add_argument("--synth-ratio", type=float, default=0.5, help="share of batches drawn from --synth")
    parser.add_argument("--out", required=True, help="run folder (resumed from its last.pt when present)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="accurate", help="architecture")
    parser.add_argument("--epochs", type=int, required=True)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    parser.add_argument("--lr-schedule", choices=("cosine",), default="cosine",
                        help="cosine decay over the run's epochs x steps (train.py's cosine schedule)")
    parser.add_argument("--warmup", type=float, default=0.0, help="share of the run warming up")
    parser.add_argument("--steps-per-epoch", type=int, help="default: one pass over the real training lines")
    parser.add_argument("--min-char-count", type=int, default=DEFAULT_MIN_CHAR_COUNT,
                        help="characters rarer than this in the training texts are left out (with their lines)")
    parser.add_argument("--max-val-lines", type=int, default=0, help="validate on at most this many lines (0 = all)")
    parser.add_argument("--ema", type=float, default=0.0, metavar="MOMENTUM",
                        help="keep a moving average of the weights (momentum per step, e.g. 0.999; 0 = off), as "
                             "training.train's --ema: validated and saved as the run's model (last.pt's 'model'), "
                             "the weights as trained kept beside it ('trained_model') and validated too "
                             "(history's val_cer_trained)")
    parser.add_argument("--keep-epochs", type=int, default=0, metavar="K",
                        help="also keep the model (the average, with --ema) of each of the last K epochs in "
                             "OUT/epochs/epoch-NNN.pt, for python -m training.average_epochs (0 = none)")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader processes making and augmenting batches (0 = in the training process)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                        help="the training steps' forward pass: fp32 (on a GPU its convolutions and matrix products "
                             "in TF32), or bf16 autocast, CPU only, on CPUs with AMX or AVX512-BF16 (about 1.7x faster there; "
                             "refused where Linux reports neither, as PyTorch would emulate it many times slower; the weights, optimizer, loss and validation "
                             "stay fp32)")
    parser.add_argument("--progress-every", type=int, default=200, help="a progress line every this many steps")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 <= args.ema < 1.0:
        parser.error(f"--ema wants a momentum in [0, 1) (0 = off), got {args.ema:g}")
    if args.keep_epochs < 0:
        parser.error(f"--keep-epochs wants a number of epochs (0 = none), got {args.keep_epochs}")
    # Progress is printed; the warnings of train.py's functions it shares (unknown characters, lines left out) logged.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return train(args)


def train(args) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.precision == "bf16" and device.type != "cpu":
        # CUDA's autocast runs cuDNN LSTMs in fp16 whatever dtype it is given, and nothing here scales the loss.
        raise SystemExit(f"--precision bf16 is for CPUs; on {device.type} train in fp32 (TF32 there)")
    if args.precision == "bf16" and native_bf16() is False:
        # Emulated, a step ran >10x slower than fp32 (2-core AMD EPYC, AVX2 only), and oneDNN refuses some bf16
        # LSTM calls outright there: a run that would crawl or fail mid-epoch is refused before it starts.
        raise SystemExit(f"--precision bf16 needs a CPU with AVX512-BF16 or AMX; this one ({cpu_model() or 'unknown'}) "
                         "has neither, so PyTorch would emulate it: train with --precision fp32")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = False  # every batch has another width
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = load_checkpoint(out / CHECKPOINT) if (out / CHECKPOINT).exists() else None

    real_train, val_lines = read_lines(args.data, args.val_source)
    synth_lines = [l for d in args.synth for l in read_split(Path(d), "train")]
    if not real_train and not synth_lines:
        raise SystemExit("no training lines in --data / --synth")
    if not val_lines:
        raise SystemExit("no validation lines: give --val-source or --data folders with a val split")
    val_lines = validation_sample(val_lines, args.max_val_lines)
    if checkpoint:
        alphabet = Alphabet.from_json(checkpoint["alphabet"])
        config = ModelConfig.from_dict(checkpoint["model_config"])
    else:
        alphabet = training_alphabet(real_train, synth_lines, args.min_char_count)
        config = PRESETS[args.preset]
    real, synth, val, ratio, steps = line_pools(real_train, synth_lines, val_lines, alphabet, config, args)
    total_steps = args.epochs * steps

    torch.manual_seed(args.seed)
    model = TorchCRNN(config, alphabet.num_classes).to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=args.lr, eps=ADAM_EPSILON)
    state = {"epoch": 0, "step": 0, "seconds": 0.0, "history": []}
    # a resumed run keeps the averaging it started with (none, for runs started without it)
    ema = checkpoint.get("ema_momentum", 0.0) if checkpoint else args.ema
    if checkpoint and ema != args.ema:
        kept = f"averages its weights with --ema {ema:g}" if ema else "does not average its weights"
        print(f"this run {kept} (as it started); --ema {args.ema:g} is ignored", flush=True)
        args.ema = ema  # recorded (last.pt, run.json) as the run trains, not as this invocation asked
    average = WeightAverage(parameters, ema) if ema else None
    if checkpoint:
        if average is not None:
            model.load_state_dict(checkpoint["model"])  # the average's weights, then the trained ones over them
            average = WeightAverage(parameters, ema)
            average.updates = checkpoint["step"]
            model.load_state_dict(checkpoint["trained_model"])
        else:
            model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        state = {k: checkpoint[k] for k in state}
        restore_rng_states(checkpoint, device)
        print(f"resuming {out} after epoch {state['epoch']} (step {state['step']})", flush=True)
    print(f"alphabet {len(alphabet)} chars; real {len(real)}, synth {len(synth)} (ratio {ratio:.2f}), val {len(val)} "
          f"lines; {steps} steps/epoch; params {sum(p.numel() for p in parameters)}; device {device}", flush=True)

    started = time.monotonic()
    while state["epoch"] < args.epochs:
        epoch = state["epoch"] + 1
        epoch_start = time.monotonic()
        stream = BatchStream(real, synth, ratio, args.batch_size, not args.no_augment, args.seed, epoch)
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=args.workers,
                                             pin_memory=device.type == "cuda",
                                             persistent_workers=False)
        model.train()
        losses: list[float] = []
        lr = args.lr
        for i, (x, widths, y, label_lengths, frames) in enumerate(loader):
            if i >= steps:
                break
            lr = cosine_learning_rate(args.lr, run_progress(state["step"], total_steps, 0.0, None), args.warmup)
            for group in optimizer.param_groups:
                group["lr"] = lr
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                logits = model(x.to(device, non_blocking=True), widths)
            loss = ctc_loss(logits, y.to(device, torch.long), label_lengths.to(device, torch.long),
                            frames.to(device, torch.long))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_each_gradient(parameters, CLIPNORM)
            optimizer.step()
            if average is not None:
                average.update()
            value = float(loss.detach())
            if math.isfinite(value):
                losses.append(value)
            state["step"] += 1
            if args.progress_every and (i + 1) % args.progress_every == 0:
                print(f"  epoch {epoch} step {i + 1}/{steps}: loss {np.mean(losses[-args.progress_every:]):.3f}, "
                      f"lr {lr:.2e}, {time.monotonic() - epoch_start:.0f} s", flush=True)
        del loader
        model.eval()
        trained_cer = {}
        if average is not None:
            trained = evaluate_predictions(predictor(model, device), val, alphabet)
            trained_cer = {"val_cer_trained": round(float(trained.cer), 5)}
            trained_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            average.swap()  # validated and saved: the average
        counter = evaluate_predictions(predictor(model, device), val, alphabet)
        state["seconds"] += time.monotonic() - epoch_start
        train_loss = float(np.mean(losses)) if losses else float("nan")
        row = {"epoch": epoch, "step": state["step"], "train_loss": round(train_loss, 4),
               "val_cer": round(float(counter.cer), 5), "val_wer": round(float(counter.wer), 5), **trained_cer,
               "lr": float(lr), "seconds": round(state["seconds"], 1)}
        state["history"].append(row)
        state["epoch"] = epoch
        print(f"epoch {epoch}/{args.epochs} (step {state['step']}): loss {train_loss:.3f}, val CER {counter.cer:.4f}, "
              f"WER {counter.wer:.4f}, lr {lr:.2e}, {time.monotonic() - epoch_start:.0f} s", flush=True)
        averaged = {"ema_momentum": ema, "trained_model": trained_state} if average is not None else {}
        save_checkpoint(out / CHECKPOINT, {
            "model": model.state_dict(), **averaged, "optimizer": optimizer.state_dict(), **state,
            **rng_states(device), "machine": machine(device), "alphabet": alphabet.to_json(),
            "model_config": config.to_dict(),
            "args": {k: v for k, v in vars(args).items()}})
        if args.keep_epochs:
            keep_epoch_model(out, epoch, model.state_dict(), row, args.keep_epochs)
        if average is not None:
            average.swap()  # back to the trained weights for the next epoch
        write_history(out, state["history"])
        run = {"args": vars(args), "lines": {"real": len(real), "synth": len(synth), "val": len(val)},
               "alphabet_size": len(alphabet), "steps_per_epoch": steps, "machine": machine(device),
               "minutes": round(state["seconds"] / 60, 2), "val_cer": [h["val_cer"] for h in state["history"]]}
        (out / "run.json").write_text(json.dumps(run, ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"done: {state['epoch']} epochs, {state['step']} steps, {(time.monotonic() - started) / 60:.1f} min "
          f"this invocation", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
