"""Average the models of a run's last K epochs into a run folder that ``torch_to_keras`` and ``loo_finish`` read.

    python -m training.average_epochs data/cand/x/IbnQutayba/run --last 5 \\
        --out data/cand/x-avg5/IbnQutayba/run

The run must have kept them (``train_torch --keep-epochs K`` or more). The K epochs are those that end at
``last.pt``'s epoch, the run's last: the epoch is never chosen on the held-out book. Floating-point tensors
(weights, BatchNorm's running statistics) are averaged; integer buffers (BatchNorm's batch counter) are the
last epoch's. Writes OUT/last.pt (the run's, its model replaced by the average, the optimizer and the weights as
trained left out, ``averaged_epochs`` added), with history.csv and run.json copied beside it.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch

from .train_torch import CHECKPOINT, EPOCHS_DIR, load_checkpoint, save_checkpoint


class AveragingError(ValueError):
    pass


def average_state_dicts(states: list[dict]) -> dict:
    """The mean of each floating tensor over ``states``; the last state's value for the others."""
    if not states or any(state.keys() != states[0].keys() for state in states):
        raise AveragingError("the epochs' models do not have the same tensors")
    averaged = {}
    for key, last in states[-1].items():
        if last.is_floating_point():
            averaged[key] = torch.stack([state[key].to(torch.float64) for state in states]).mean(0).to(last.dtype)
        else:
            averaged[key] = last.clone()
    return averaged


def average_last_epochs(run: Path, last: int, out: Path) -> list[int]:
    """Write OUT/last.pt with the average of RUN's last ``last`` epochs; returns the epochs averaged."""
    if last < 1:
        raise AveragingError(f"--last wants at least one epoch, got {last}")
    checkpoint_path = run / CHECKPOINT
    if not checkpoint_path.exists():
        raise AveragingError(f"{run} has no {CHECKPOINT}")
    checkpoint = load_checkpoint(checkpoint_path)
    epochs = list(range(checkpoint["epoch"] - last + 1, checkpoint["epoch"] + 1))
    missing = [e for e in epochs if not (run / EPOCHS_DIR / f"epoch-{e:03d}.pt").exists()]
    if epochs[0] < 1 or missing:
        raise AveragingError(f"{run} kept no model of epoch(s) {', '.join(map(str, missing or epochs[:1]))}: train "
                             f"with --keep-epochs {last} or more (the run is at epoch {checkpoint['epoch']})")
    kept = [load_checkpoint(run / EPOCHS_DIR / f"epoch-{e:03d}.pt") for e in epochs]
    if any(k["epoch"] != e for k, e in zip(kept, epochs)):
        raise AveragingError(f"{run / EPOCHS_DIR}: a file's epoch does not match its name")
    if not all(torch.equal(kept[-1]["model"][k], v) for k, v in checkpoint["model"].items()):
        raise AveragingError(f"{run}: the last kept epoch is not last.pt's model (a run resumed elsewhere?)")
    averaged = {k: v for k, v in checkpoint.items() if k not in ("optimizer", "trained_model")}
    averaged["model"] = average_state_dicts([k["model"] for k in kept])
    averaged["averaged_epochs"] = epochs
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / CHECKPOINT, averaged)
    for name in ("history.csv", "run.json"):
        if (run / name).exists():
            shutil.copy2(run / name, out / name)
    return epochs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.average_epochs", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("run", type=Path, help="a train_torch run folder (last.pt, epochs/)")
    parser.add_argument("--last", type=int, required=True, metavar="K", help="average the last K epochs")
    parser.add_argument("--out", type=Path, required=True, help="run folder to write (last.pt, history.csv)")
    args = parser.parse_args(argv)
    if args.out.resolve() == args.run.resolve():
        parser.error("--out must be another folder: the run's own last.pt is what it resumes from")
    try:
        epochs = average_last_epochs(args.run, args.last, args.out)
    except AveragingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out / CHECKPOINT}: the average of epochs {epochs[0]}-{epochs[-1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
