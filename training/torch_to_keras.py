"""A ``training.train_torch`` run as a Keras checkpoint, checked to read as the torch model does.

    python -m training.torch_to_keras runs/torch-crnn/last.pt --out runs/torch-crnn-keras/best.keras

Builds ``training.model.build_model`` from the run's architecture and alphabet, copies every weight
(``training.torch_crnn.copy_torch_to_keras``), compares both models on a padded batch of random lines of
different widths (the largest probability difference over the lines' own frames is printed; above 1e-3
nothing is written and the exit status is 2) and saves with ``training.checkpoint.save_model``. Beside the
checkpoint goes a ``state.json`` in ``training.train``'s form (alphabet, architecture, history; the last
epoch as the exported one), so the folder is a run for ``training.export`` and the checkpoint serves
``training.evaluate`` and ``--init-from`` as any other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from recognition.alphabet import Alphabet

from .model import WIDTH_STRIDE, ModelConfig, frames_for

MAX_DIFFERENCE = 1e-3
CHECK_WIDTHS = (13, 61, 130, 250, 401)  # not multiples of the stride, padded up to the widest


def probability_difference(keras_model, torch_model, height: int, seed: int = 0) -> float:
    """Largest |probs difference| of the two models over the valid frames of a padded random batch."""
    import torch

    rng = np.random.default_rng(seed)
    widths = np.array(CHECK_WIDTHS, np.int32)
    x = np.zeros((len(widths), height, -(-int(widths.max()) // WIDTH_STRIDE) * WIDTH_STRIDE, 1), np.float32)
    for i, w in enumerate(widths):
        x[i, :, :w, 0] = rng.random((height, w))
    expected = keras_model([x, widths], training=False).numpy()
    torch_model.eval()
    with torch.no_grad():
        got = torch_model.probs(torch.from_numpy(x), torch.from_numpy(widths)).numpy()
    return max(float(np.abs(expected[i, : frames_for(w)] - got[i, : frames_for(w)]).max())
               for i, w in enumerate(widths))


def run_state(checkpoint: dict, source: Path) -> dict:
    """``training.train``'s state.json for the converted run: the last epoch is the one exported."""
    from .train_torch import machine_line

    history = checkpoint["history"]
    last = history[-1] if history else {}
    planned = checkpoint["args"].get("epochs")
    # Only a run that trained all its planned epochs ended on them: the model card calls the last epoch
    # "not chosen by the held-out book" on that word, and an interrupted run's last epoch is no such thing.
    stop_reason = ("epochs done" if planned is not None and checkpoint["epoch"] >= planned else
                   f"interrupted after epoch {checkpoint['epoch']} of {planned}")
    return {"epoch": checkpoint["epoch"], "step": checkpoint["step"], "best_cer": last.get("val_cer"),
            "best_epoch": last.get("epoch"), "seconds": checkpoint["seconds"],
            "alphabet": json.loads(checkpoint["alphabet"]), "model_config": checkpoint["model_config"],
            "ema_momentum": checkpoint.get("ema_momentum", 0.0),
            "averaged_epochs": checkpoint.get("averaged_epochs", []),
            "history": history, "args": checkpoint["args"], "machine": machine_line(checkpoint),
            "converted_from": str(source), "stop_reason": stop_reason}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.torch_to_keras", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a train_torch run's last.pt")
    parser.add_argument("--out", required=True, help="the .keras checkpoint to write (state.json goes beside it)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from .checkpoint import save_model
    from .model import build_model
    from .torch_crnn import TorchCRNN, copy_torch_to_keras
    from .train_torch import load_checkpoint

    source, out = Path(args.checkpoint), Path(args.out)
    checkpoint = load_checkpoint(source)
    alphabet = Alphabet.from_json(checkpoint["alphabet"])
    config = ModelConfig.from_dict(checkpoint["model_config"])
    torch_model = TorchCRNN(config, alphabet.num_classes)
    torch_model.load_state_dict(checkpoint["model"])
    keras_model = build_model(config, alphabet.num_classes)
    copy_torch_to_keras(torch_model, keras_model)
    difference = probability_difference(keras_model, torch_model, config.height)
    print(f"Keras vs torch: max |probs difference| over valid frames {difference:.2e} (limit {MAX_DIFFERENCE:g})")
    if not difference <= MAX_DIFFERENCE:
        print("the models disagree: nothing written", file=sys.stderr)
        return 2
    out.parent.mkdir(parents=True, exist_ok=True)
    save_model(keras_model, out, alphabet, config)
    state_path = out.parent / "state.json"
    if state_path.exists() and "converted_from" not in json.loads(state_path.read_text(encoding="utf-8")):
        print(f"{state_path} belongs to a Keras run: left as it is (export this checkpoint with its own folder)",
              file=sys.stderr)
    else:
        tmp = state_path.with_name("state.json.tmp")
        tmp.write_text(json.dumps(run_state(checkpoint, source), ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(state_path)
    print(f"wrote {out} (epoch {checkpoint['epoch']}, {checkpoint['step']} steps, alphabet {len(alphabet)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
