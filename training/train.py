"""Train the CRNN with CTC on preprocessed shards (``training.preprocess``).

    python -m training.train --data data/real --synth data/synth-arrays \\
        --synth-ratio 0.5 --out runs/crnn

Each epoch ends with the CER on the held-out book (the ``val`` split of the
``--data`` folders). The best model by that CER is kept as ``best.keras``;
``last.keras`` + ``state.json`` let an interrupted run resume where it stopped
(run the same command again); ``--session-minutes`` ends an invocation at an
epoch boundary without changing the run (its epochs and learning rates).
Logs: ``history.csv``, TensorBoard files under ``tensorboard/`` and ``curves.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import logging
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from recognition.alphabet import Alphabet
from recognition.ctc import decode_line
from recognition.metrics import ErrorCounter
from recognition.text import normalize_text

from .augment import augment_line
from .checkpoint import load_model, save_model
from .labels import DEFAULT_MIN_CHAR_COUNT, alphabet_from_texts, encode_labels
from .machine import machine_description
from .model import PRESETS, ModelConfig, build_model, frames_for, logits_model, padded_width
from .schedule import EarlyStopping, cosine_learning_rate, run_progress
from .shards import Line, read_split

log = logging.getLogger("training.train")
TRAINED_WEIGHTS = "trained_weights.npz"  # an --ema run's weights as trained (last.keras is their average)


# -- data ------------------------------------------------------------------------

class LinePool:
    """Lines with their encoded labels, served as width-bucketed batches."""

    def __init__(self, lines: list[Line], alphabet: Alphabet, name: str):
        self.name = name
        self.lines: list[Line] = []
        self.labels: list[np.ndarray] = []
        too_long = 0
        for line in lines:
            # Shards keep the text as normalised when they were made; normalise
            # again so older shards follow the current convention.
            line.text = normalize_text(line.text)
            labels = encode_labels(line.text, alphabet)
            repeats = int(np.sum(labels[1:] == labels[:-1])) if len(labels) > 1 else 0
            if len(labels) + repeats > frames_for(line.image.shape[1]):
                too_long += 1
                continue
            self.lines.append(line)
            self.labels.append(labels)
        if too_long:
            log.warning("%s: %d lines left out: more characters than CTC frames", name, too_long)

    def __len__(self) -> int:
        return len(self.lines)

    def batches(self, batch_size: int, rng: np.random.Generator) -> list[list[int]]:
        """Indices grouped by similar width (jittered so batches change each epoch)."""
        widths = np.array([l.image.shape[1] for l in self.lines], np.float64)
        order = np.argsort(widths * rng.uniform(0.9, 1.1, len(widths)))
        groups = [order[i: i + batch_size].tolist() for i in range(0, len(order), batch_size)]
        rng.shuffle(groups)
        return groups

    def make_batch(self, indices: list[int], rng: np.random.Generator | None):
        images = [self.lines[i].image.astype(np.float32) / 255.0 for i in indices]
        if rng is not None:
            images = [augment_line(img, rng) for img in images]
        return pad_batch(images, [self.labels[i] for i in indices])


def pad_batch(images: list[np.ndarray], labels: list[np.ndarray]):
    """(images, true widths, labels, label lengths, frames): zero-padded to a common multiple of the stride."""
    height = images[0].shape[0]
    width = padded_width(max(img.shape[1] for img in images))
    x = np.zeros((len(images), height, width, 1), np.float32)
    for i, img in enumerate(images):
        x[i, :, : img.shape[1], 0] = img
    max_label = max(len(l) for l in labels)
    y = np.zeros((len(labels), max(max_label, 1)), np.int32)
    for i, l in enumerate(labels):
        y[i, : len(l)] = l
    label_lengths = np.array([len(l) for l in labels], np.int32)
    widths = np.array([img.shape[1] for img in images], np.int32)
    frames = np.array([frames_for(w) for w in widths], np.int32)
    return x, widths, y, label_lengths, frames


def mixed_batches(real: LinePool, synth: LinePool, ratio: float, batch_size: int, rng: np.random.Generator,
                  augment: bool):
    """Endless width-bucketed batches, each drawn from ``synth`` with probability ``ratio`` (else ``real``),
    every pool passed through in a new order each time it runs out (train.py's and train_torch's stream)."""
    queues = {}
    while True:
        pool = synth if (len(synth) and (not len(real) or rng.random() < ratio)) else real
        queue = queues.get(pool.name)
        indices = next(queue, None) if queue is not None else None
        if indices is None:  # a new pass over this pool, in a new order
            queues[pool.name] = iter(pool.batches(batch_size, rng))
            indices = next(queues[pool.name])
        yield pool.make_batch(indices, rng if augment else None)


def mixing_ratio(requested: float, real: LinePool, synth: LinePool) -> float:
    """The share of synthetic batches: as asked when both pools have lines, else all from the one that has."""
    return requested if len(synth) and len(real) else (1.0 if len(synth) else 0.0)


def steps_per_epoch(real: LinePool, synth: LinePool, ratio: float, batch_size: int) -> int:
    """One pass over the real training lines (the synthetic batches come on top), or over the synthetic ones."""
    if len(real):
        return max(1, math.ceil(len(real) / batch_size / max(1e-9, 1 - ratio)))
    return max(1, len(synth) // batch_size)


def training_alphabet(real_train: list[Line], synth_lines: list[Line], min_count: int) -> Alphabet:
    """A fresh run's alphabet: the characters of its real and synthetic training texts."""
    return alphabet_from_texts([l.text for l in real_train + synth_lines], min_count)


def warn_of_unknown_characters(val_lines: list[Line], alphabet: Alphabet) -> set[str]:
    """The validation characters the model cannot output, warned of: each counts as an error in the val CER,
    which no training can lower (a held-out book's own letters, or ones too rare in the training texts)."""
    unknown = set().union(*(alphabet.unknown(l.text) for l in val_lines))
    if unknown:
        log.warning("validation lines have characters the model cannot output (counted as errors): %s",
                    "".join(sorted(unknown)))
    return unknown


def validation_sample(val_lines: list[Line], at_most: int) -> list[Line]:
    """At most ``at_most`` validation lines spread evenly over the book (0: all), the same for every trainer."""
    if not at_most:
        return val_lines
    return val_lines[:: max(1, len(val_lines) // at_most)][:at_most]


def line_pools(real_train: list[Line], synth_lines: list[Line], val_lines: list[Line], alphabet: Alphabet,
               config: ModelConfig, args) -> tuple[LinePool, LinePool, LinePool, float, int]:
    """The real, synthetic and validation pools a run trains on, their mixing ratio and its steps per epoch
    (``training.train`` and ``training.train_torch`` alike): lines the alphabet cannot write are left out of
    training, and data of another height than the model's is refused."""
    heights = {l.image.shape[0] for l in real_train + val_lines + synth_lines}
    if heights != {config.height}:
        raise SystemExit(f"data heights {sorted(heights)} do not match the model height {config.height}")
    warn_of_unknown_characters(val_lines, alphabet)
    real = LinePool([l for l in real_train if not alphabet.unknown(l.text)], alphabet, "real")
    synth = LinePool([l for l in synth_lines if not alphabet.unknown(l.text)], alphabet, "synth")
    val = LinePool(val_lines, alphabet, "val")
    ratio = mixing_ratio(args.synth_ratio, real, synth)
    return real, synth, val, ratio, args.steps_per_epoch or steps_per_epoch(real, synth, ratio, args.batch_size)


def batch_dataset(tf, real: LinePool, synth: LinePool, ratio: float, batch_size: int,
                  rng: np.random.Generator, augment: bool, height: int):
    """An endless tf.data stream of width-bucketed batches, mixed real/synthetic by ``ratio``.

    Batches are assembled and augmented in a generator that tf.data runs ahead
    of the training step (prefetch), so the CPU work overlaps the model's.
    """
    def generate():
        return mixed_batches(real, synth, ratio, batch_size, rng, augment)

    signature = (tf.TensorSpec((None, height, None, 1), tf.float32), tf.TensorSpec((None,), tf.int32),
                 tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None,), tf.int32),
                 tf.TensorSpec((None,), tf.int32))
    return tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(2)


# -- model -----------------------------------------------------------------------

def load_or_build(args, alphabet: Alphabet, config: ModelConfig):
    if args.init_from:
        from .finetune import load_for_finetuning

        return load_for_finetuning(args.init_from, alphabet, config)
    return build_model(config, alphabet.num_classes)


class Trainer:
    def __init__(self, model, learning_rate: float, ema_momentum: float = 0.0):
        import keras
        import tensorflow as tf

        self.tf = tf
        self.model = model
        self.logits = logits_model(model)
        # With ema_momentum the optimizer also keeps a moving average of the weights, and that average is the
        # model the run validates and saves: late epochs at a high learning rate swing the held-out CER by
        # several tenths of a point (v2: 2.5-4.0%), and an average over the last few hundred steps smooths that
        # out without anyone choosing an epoch by the held-out book.
        self.optimizer = keras.optimizers.Adam(learning_rate=learning_rate, clipnorm=5.0,
                                               use_ema=ema_momentum > 0, ema_momentum=ema_momentum or 0.99)
        signature = [
            tf.TensorSpec((None, model.input_shape[0][1], None, 1), tf.float32),
            tf.TensorSpec((None,), tf.int32),
            tf.TensorSpec((None, None), tf.int32),
            tf.TensorSpec((None,), tf.int32),
            tf.TensorSpec((None,), tf.int32),
        ]
        self.train_step = tf.function(self._train_step, input_signature=signature)
        self.predict = tf.function(lambda x, widths: model([x, widths], training=False),
                                   input_signature=signature[:2])

    def _train_step(self, x, widths, y, label_lengths, frames):
        tf = self.tf
        with tf.GradientTape() as tape:
            logits = self.logits([x, widths], training=True)
            loss = tf.nn.ctc_loss(labels=y, logits=logits, label_length=label_lengths,
                                  logit_length=frames, logits_time_major=False, blank_index=0)
            loss = tf.reduce_mean(loss)
        grads = tape.gradient(loss, self.logits.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.logits.trainable_variables))
        return loss

    @contextlib.contextmanager
    def averaged_weights(self):
        """The moving average in place of the trained weights (runs with ``ema_momentum``), then back.

        Keras averages the trainable weights only: BatchNorm's running statistics (a moving average themselves,
        over about 100 steps) were gathered under the trained weights. The CER recorded is the averaged model's
        as saved, so what that mismatch costs is measured, not hidden.
        """
        variables = self.logits.trainable_variables
        if not self.optimizer.use_ema or not self.optimizer.built or int(self.optimizer.iterations.numpy()) == 0:
            yield  # no step taken yet: nothing averaged (the average would still be its zero start)
            return
        trained = [v.numpy() for v in variables]
        self.optimizer.finalize_variable_values(variables)
        try:
            yield
        finally:
            for variable, value in zip(variables, trained):
                variable.assign(value)

    def trained_weights(self) -> list[np.ndarray]:
        return [v.numpy() for v in self.logits.trainable_variables]

    def restore_trained_weights(self, values: list[np.ndarray]) -> None:
        for variable, value in zip(self.logits.trainable_variables, values):
            variable.assign(value)

    @property
    def learning_rate(self) -> float:
        return float(self.optimizer.learning_rate.numpy())

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.optimizer.learning_rate.assign(value)


def evaluate_pool(trainer: Trainer, pool: LinePool, alphabet: Alphabet, batch_size: int = 32) -> ErrorCounter:
    return evaluate_predictions(lambda x, widths: trainer.predict(x, widths).numpy(), pool, alphabet, batch_size)


def evaluate_predictions(predict, pool: LinePool, alphabet: Alphabet, batch_size: int = 32) -> ErrorCounter:
    """Greedy CTC reading of every line of ``pool`` by ``predict(images, widths) -> probs`` (NumPy), counted."""
    counter = ErrorCounter()
    order = np.argsort([l.image.shape[1] for l in pool.lines])
    for start in range(0, len(order), batch_size):
        idx = order[start: start + batch_size].tolist()
        x, widths, _, _, frames = pool.make_batch(idx, None)
        probs = predict(x, widths)
        for row, i in enumerate(idx):
            counter.add(pool.lines[i].text, decode_line(probs[row, : frames[row]], alphabet).text)
    return counter


# -- run bookkeeping ---------------------------------------------------------------

def plot_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(7, 4))
    ax1.plot(epochs, [h["train_loss"] for h in history], "b-o", label="train CTC loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("CTC loss", color="b")
    ax2 = ax1.twinx()
    ax2.plot(epochs, [100 * h["val_cer"] for h in history], "r-s", label="val CER (held-out book)")
    ax2.set_ylabel("CER %", color="r")
    fig.suptitle("Training curves")
    fig.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def build_parser() -> argparse.ArgumentParser:
    """The command line, apart so that others (``training.leave_one_out``) read train arguments as train does."""
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", nargs="+", required=True, help="preprocessed real data folders (train + val splits)")
    parser.add_argument("--synth", nargs="*", default=[], help="preprocessed synthetic data folders (train split)")
    parser.add_argument("--synth-ratio", type=float, default=0.5, help="share of batches drawn from --synth")
    parser.add_argument("--out", required=True, help="run folder (resumed if it holds a checkpoint)")
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="architecture (default: accurate, or --init-from's own); with --init-from, a "
                             "different preset starts from the model's layers that fit (e.g. 'swift' from v2)")
    parser.add_argument("--init-from", help="fine-tune from this .keras model (its alphabet is kept and extended)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps-per-epoch", type=int, help="default: one pass over the real training lines")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--patience", type=int, default=6, help="epochs without val improvement before stopping")
    parser.add_argument("--lr-patience", type=int, default=2, help="epochs without improvement before halving the LR")
    parser.add_argument("--lr-schedule", choices=("plateau", "cosine"), default="plateau",
                        help="plateau: halve the LR after --lr-patience epochs without improvement; cosine: warm-up "
                             "then cosine decay over the step or time budget, whichever ends the run")
    parser.add_argument("--warmup", type=float, default=0.0, help="share of the run warming up (cosine schedule)")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many training steps (0 = no limit)")
    parser.add_argument("--min-steps", type=int, default=0, help="no early stopping before this many steps")
    parser.add_argument("--val-smoothing", type=float, default=0.0,
                        help="judge the moving average of the val CER with this weight on the past (0 = raw CER)")
    parser.add_argument("--max-minutes", type=float, help="stop cleanly (checkpoint saved) after this long")
    parser.add_argument("--session-minutes", type=float,
                        help="end this invocation at an epoch boundary within this long: one epoch always runs, "
                             "a further one only when the last one's duration says it ends in time; run the same "
                             "command again to continue. Unlike --max-minutes it is no budget of the run: the "
                             "epochs and the learning rate do not depend on where sessions end")
    parser.add_argument("--max-val-lines", type=int, default=0, help="validate on at most this many lines (0 = all)")
    parser.add_argument("--min-char-count", type=int, default=DEFAULT_MIN_CHAR_COUNT,
                        help="characters rarer than this in the training texts are left out (with their lines)")
    parser.add_argument("--ema", type=float, default=0.0, metavar="MOMENTUM",
                        help="validate and save an exponential moving average of the weights with this momentum "
                             "per step (e.g. 0.998: about the last 500 steps); 0 = the weights as trained")
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0 = all cores)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 0.0 <= args.ema < 1.0:
        parser.error(f"--ema wants a momentum in [0, 1) (0 = off), got {args.ema:g}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return train(args)


def train(args) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf
    from tqdm import tqdm

    if args.threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # TensorFlow already ran in this process (a second run in it): its threads stay
            log.warning("TensorFlow already started in this process with %d threads; --threads %d not applied",
                        tf.config.threading.get_intra_op_parallelism_threads(), args.threads)
    keras.utils.set_random_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    state_path = out / "state.json"
    resuming = state_path.exists() and (out / "last.keras").exists()

    real_train = [l for d in args.data for l in read_split(Path(d), "train")]
    val_lines = [l for d in args.data for l in read_split(Path(d), "val")]
    synth_lines = [l for d in args.synth for l in read_split(Path(d), "train")]
    if not real_train and not synth_lines:
        raise SystemExit("no training lines in --data / --synth")
    if not val_lines:
        raise SystemExit("no validation lines: preprocess --data with --val-source (a held-out book)")
    val_lines = validation_sample(val_lines, args.max_val_lines)

    if resuming:
        state = json.loads(state_path.read_text(encoding="utf-8"))
        alphabet = Alphabet(state["alphabet"])
        config = ModelConfig.from_dict(state["model_config"])
        model = load_model(out / "last.keras")
        log.info("resuming %s at epoch %d (best val CER %.4f)", out, state["epoch"], state["best_cer"])
    else:
        if args.init_from:
            from .finetune import base_alphabet

            texts = [l.text for l in real_train + synth_lines]
            alphabet = base_alphabet(args.init_from).extended(texts, args.min_char_count)
        else:
            alphabet = training_alphabet(real_train, synth_lines, args.min_char_count)
        if args.preset:
            config = PRESETS[args.preset]
        elif args.init_from:
            from .finetune import base_config

            config = base_config(args.init_from)
        else:
            config = PRESETS["accurate"]
        model = load_or_build(args, alphabet, config)
        state = {"epoch": 0, "step": 0, "best_cer": None, "best_epoch": None, "lr": args.lr,
                 "since_best": 0, "seconds": 0.0, "stopping": None, "alphabet": list(alphabet.characters),
                 "model_config": config.to_dict(), "history": []}
    real, synth, val, ratio, steps = line_pools(real_train, synth_lines, val_lines, alphabet, config, args)
    log.info("alphabet %d chars; real %d, synth %d (ratio %.2f), val %d lines; %d steps/epoch; params %d",
             len(alphabet), len(real), len(synth), ratio, len(val), steps, model.count_params())

    # The cosine schedule follows whichever budget ends the run: the epochs are one (epochs x steps), and
    # a shorter --max-steps or the clock (--max-minutes) may end it sooner. Without counting the epochs a
    # run planned as "N epochs" with a generous time cap never decays its learning rate.
    step_budget = min([b for b in (args.max_steps, args.epochs * steps) if b], default=0)
    stopping = (EarlyStopping.from_dict(state["stopping"]) if state.get("stopping")
                else EarlyStopping(args.patience, args.min_steps, args.val_smoothing, best=state["best_cer"],
                                   since_best=state["since_best"]))
    ema = state.setdefault("ema_momentum", args.ema)  # a resumed run keeps the averaging it started with
    if ema != args.ema:
        log.warning("this run averages its weights with --ema %g (as it started); --ema %g is ignored", ema, args.ema)
    trainer = Trainer(model, state["lr"], ema)
    if resuming and (out / "optimizer.npz").exists():
        _restore_optimizer(trainer, out / "optimizer.npz")
    if resuming and ema:
        # last.keras holds the average; training goes on from the weights that were being trained.
        if (out / TRAINED_WEIGHTS).exists():
            with np.load(out / TRAINED_WEIGHTS) as data:
                trainer.restore_trained_weights([data[f"arr_{i}"] for i in range(len(data.files))])
        else:
            log.warning("%s is missing: training goes on from the averaged weights of last.keras", TRAINED_WEIGHTS)
    writer = tf.summary.create_file_writer(str(out / "tensorboard"))
    started = time.monotonic()
    budget = args.max_minutes * 60 if args.max_minutes else None
    seconds_before = state["seconds"]
    stop_reason = "epochs done"
    last_epoch_seconds = None  # wall time of this invocation's last epoch, validation and saving included

    while state["epoch"] < args.epochs:
        if args.max_steps and state["step"] >= args.max_steps:
            stop_reason = f"step budget of {args.max_steps} steps used"
            break
        if budget and time.monotonic() - started > budget:  # no sliver of an epoch at the end
            stop_reason = f"time budget of {args.max_minutes} minutes used"
            break
        if (args.session_minutes is not None and last_epoch_seconds is not None
                and time.monotonic() - started + last_epoch_seconds > args.session_minutes * 60):
            # Whole epochs only: a cut epoch would make the run's steps depend on where sessions end.
            stop_reason = (f"session of {args.session_minutes:g} minutes over (another epoch of "
                           f"~{last_epoch_seconds / 60:.1f} min would not end in it); run again to continue")
            break
        epoch_began = time.monotonic()
        epoch = state["epoch"] + 1
        rng = np.random.default_rng([args.seed, epoch])
        dataset = batch_dataset(tf, real, synth, ratio, args.batch_size, rng, not args.no_augment, config.height)
        losses = []
        epoch_start = time.monotonic()
        bar = tqdm(dataset.take(steps), total=steps, desc=f"epoch {epoch}", unit="batch", file=sys.stderr,
                   disable=None)
        for batch in bar:
            if args.lr_schedule == "cosine":
                progress = run_progress(state["step"], step_budget, seconds_before + time.monotonic() - started,
                                        budget)
                trainer.learning_rate = cosine_learning_rate(args.lr, progress, args.warmup)
            loss = float(trainer.train_step(*batch))
            if math.isfinite(loss):
                losses.append(loss)
            state["step"] += 1
            bar.set_postfix(loss=f"{np.mean(losses[-50:]) if losses else float('nan'):.3f}")
            if budget and time.monotonic() - started > budget:
                break
            if args.max_steps and state["step"] >= args.max_steps:
                break
        trained = trainer.trained_weights() if ema else []
        # Validated and saved is the weights' moving average where the run keeps one (--ema); the trained
        # weights go on training, and are saved beside it so that a resumed run goes on from them.
        with trainer.averaged_weights():
            counter = evaluate_pool(trainer, val, alphabet)
            train_loss = float(np.mean(losses)) if losses else float("nan")
            state["seconds"] += time.monotonic() - epoch_start
            row = {"epoch": epoch, "step": state["step"], "train_loss": round(train_loss, 4),
                   "val_cer": round(counter.cer, 5), "val_wer": round(counter.wer, 5),
                   "lr": trainer.learning_rate, "seconds": round(state["seconds"], 1)}
            state["history"].append(row)
            state["epoch"] = epoch
            with writer.as_default():
                for key in ("train_loss", "val_cer", "val_wer", "lr"):
                    tf.summary.scalar(key, row[key], step=epoch)
            # With --val-smoothing the kept checkpoint is the best by the smoothed CER too, on purpose: on a
            # slice of a few dozen lines (book adaptation) the raw minimum is mostly luck, and a gate measuring
            # the same slice would favour it. Without smoothing (the default) this is the raw CER.
            improved = stopping.update(counter.cer)
            row["val_cer_smoothed"] = round(stopping.smoothed, 5)
            state.update(since_best=stopping.since_best, stopping=stopping.to_dict())
            if improved:
                state.update(best_cer=counter.cer, best_epoch=epoch)
                save_model(model, out / "best.keras", alphabet, config)
            elif args.lr_schedule == "plateau" and state["since_best"] % args.lr_patience == 0:
                trainer.learning_rate = trainer.learning_rate * 0.5
            state["lr"] = trainer.learning_rate
            log.info("epoch %d (step %d): loss %.3f, val CER %.4f (smoothed %.4f), WER %.4f%s", epoch, state["step"],
                     train_loss, counter.cer, stopping.smoothed, counter.wer, " (best)" if improved else "")
            _save(out, model, trainer, state, args, alphabet, config, trained)
        last_epoch_seconds = time.monotonic() - epoch_began
        if stopping.should_stop(state["step"]):
            stop_reason = f"early stop: no improvement for {args.patience} epochs"
            break
        if budget and time.monotonic() - started > budget:
            stop_reason = f"time budget of {args.max_minutes} minutes used"
            break
    log.info("%s; best val CER %.4f at epoch %s", stop_reason, state["best_cer"], state["best_epoch"])
    # Why the run ended, for the model card: only a run that ended on its planned epochs or budget, with a
    # learning rate the validation book did not steer, has a last epoch the validation book did not choose.
    state["stop_reason"] = stop_reason
    tmp = out / "state.json.tmp"
    tmp.write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(state_path)
    return 0


def _save(out: Path, model, trainer: Trainer, state: dict, args, alphabet: Alphabet, config: ModelConfig,
          trained: list[np.ndarray]) -> None:
    save_model(model, out / "last.keras", alphabet, config)
    # Whole files or none: a run killed while saving must still resume (a torn .npz would not load).
    _savez_atomically(out / "optimizer.npz", [v.numpy() for v in trainer.optimizer.variables])
    if trainer.optimizer.use_ema:
        _savez_atomically(out / TRAINED_WEIGHTS, trained)
    state["args"] = {k: v for k, v in vars(args).items()}
    state["machine"] = machine_description()
    tmp = out / "state.json.tmp"
    tmp.write_text(json.dumps(state, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(out / "state.json")
    with (out / "history.csv").open("w", newline="") as f:
        # The newest row has every column (runs resumed from older versions lack some early on).
        w = csv.DictWriter(f, fieldnames=list(state["history"][-1]), restval="")
        w.writeheader()
        w.writerows(state["history"])
    plot_curves(state["history"], out / "curves.png")


def _savez_atomically(path: Path, arrays: list[np.ndarray]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        np.savez(f, *arrays)
    tmp.replace(path)


def _restore_optimizer(trainer: Trainer, path: Path) -> None:
    """Adam's moments: without them a resumed run forgets its step sizes."""
    variables = trainer.logits.trainable_variables
    trainer.optimizer.build(variables)
    with np.load(path) as data:
        values = [data[f"arr_{i}"] for i in range(len(data.files))]
    if len(values) != len(trainer.optimizer.variables):
        log.warning("optimizer state does not match the model; starting it fresh")
        return
    for var, value in zip(trainer.optimizer.variables, values):
        var.assign(value)


if __name__ == "__main__":
    sys.exit(main())
