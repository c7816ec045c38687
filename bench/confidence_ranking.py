"""Which score of a line best points a reviewer at its errors: the line confidence against the alternatives (issue 15).

    python -m bench.confidence_ranking ../shared/datasets/openiti-gs/book_IbnQutayba.Adab \\
        --model models/arabic-crnn-v2-int8.onnx --committee models/arabic-crnn-swift-int8.onnx \\
        --lm models/arabic-char-lm.npz --json bench/results/confidence-ranking.json

Reads a book's lines as the service does (``recognition.Recognizer``, greedy
decoding, the model's own calibration and conventions), counts each line's
character errors against its normalised transcription (``training.calibrate``'s
``outcome``), and ranks the lines by each key below, the most suspect first.
The figure for a key is the share of all character errors held by the 10% of
lines it ranks most suspect (``recognition.calibration.error_share_of_lowest``:
ties in file order), on all lines and on each half of the book (file order, cut
as ``training.calibrate`` cuts it). Random order scores 10%; ranking by the
errors themselves (``best_error_share``) is the ceiling no key can pass.

The keys (the character scores are the raw, uncalibrated ones, ``recognition.ctc``:
calibration is monotone, and its flat ends and the served rounding would only add ties):

* line confidence as served (calibrated, rounded to 4 places), and ``E``, the
  expected number of errors it is ``exp(-E)`` of, unrounded;
* the lowest character score; ``E`` per recognised character; how many
  characters score below 0.9; the reading's length in characters;
* with ``--lm``: the language model's surprisal of the reading
  (``CharacterLanguageModel.score``, nats), whole and per character;
* with ``--committee``: the edit distance between the model's reading and a
  second model's;
* a Poisson regression of the line's errors on all the keys above but the
  served confidence (standardised, small ridge penalty): fitted on one half,
  scored on the other, and the other way round; its "all lines" figure ranks
  each half by the fit on the other half. Nothing here is chosen on the lines
  it is scored on.

Prints the table, writes the JSON (figures per key, the regression's weights,
the machine, the arguments) and beside it a PNG of the error-capture curves:
share of the errors found against share of the lines reviewed, for ``E``, the
best other key, random order and the perfect ranking.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from bench.lines import select_lines
from bench.machine import RESULTS, machine
from recognition.calibration import best_error_share, error_share_of_lowest, maximise_by_newton
from recognition.char_lm import CharacterLanguageModel
from recognition.ctc import decode_line, greedy_decode
from recognition.image import ImageError
from recognition.metrics import edit_distance
from recognition.recognizer import Recognizer
from training.calibrate import outcome

LOW_CHARACTER_SCORE = 0.9  # "characters below" counts raw scores under this
RIDGE = 1.0  # the Poisson regression's L2 penalty on standardised weights (not on the intercept); fixed, never tuned
SERVED = "line confidence as served"
E = "E (expected errors)"
FITTED = "Poisson regression of errors on all keys"
DESCRIPTIONS = {
    SERVED: "the line's calibrated confidence, rounded as the service returns it (lowest first)",
    E: "expected number of errors, the line confidence being exp(-E) (highest first)",
    "lowest character score": "the lowest raw character score in the reading (lowest first; an empty reading: 0)",
    "E per character": "E divided by the number of recognised characters (at least 1)",
    "characters below 0.9": f"how many recognised characters have a raw score under {LOW_CHARACTER_SCORE}",
    "reading length": "recognised characters (longest first)",
    "LM surprisal": "minus the language model's log probability of the reading, end symbol included (nats)",
    "LM surprisal per character": "LM surprisal divided by the reading's characters + 1 (the end symbol)",
    "committee disagreement": "character edit distance between the model's reading and the committee model's",
}


def read_book(model: Recognizer, samples, committee: Recognizer | None) -> tuple[list, list[dict]]:
    """The lines both models can read, and per line its errors and the raw material of every key."""
    kept, lines, committee_lines = [], [], []
    for sample in samples:
        try:
            line = model.prepare(sample.image_path)
            other = committee.prepare(sample.image_path) if committee else None
        except ImageError:
            continue
        kept.append(sample)
        lines.append(line)
        committee_lines.append(other)
    info = model.info
    probabilities = model.probabilities(lines)
    committee_results = committee.recognize_lines(committee_lines) if committee else [None] * len(kept)
    rows = []
    for sample, probs, other in zip(kept, probabilities, committee_results):
        # What the service returns (Recognizer.recognize_lines decodes exactly so), and the unrounded E beside it.
        served = decode_line(probs, info.alphabet, info.mirror, model.calibration, model.conventions)
        raw = greedy_decode(probs)
        rows.append({"name": sample.image_path.name, "text": served.text, "errors": outcome(sample.text, served).errors,
                     "confidence": served.confidence, "expected_errors": raw.expected_errors,
                     "scores": np.asarray(raw.char_confidences, np.float64),
                     "committee": other.text if other is not None else None})
    return kept, rows


def suspicions(rows: list[dict], lm: CharacterLanguageModel | None) -> dict[str, np.ndarray]:
    """Per key, one value a line, higher = more suspect."""
    length = np.array([len(r["text"]) for r in rows], np.float64)
    expected = np.array([r["expected_errors"] for r in rows])
    keys = {
        SERVED: -np.array([r["confidence"] for r in rows]),
        E: expected,
        "lowest character score": -np.array([r["scores"].min() if r["scores"].size else 0.0 for r in rows]),
        "E per character": expected / np.maximum(length, 1),
        "characters below 0.9": np.array([(r["scores"] < LOW_CHARACTER_SCORE).sum() for r in rows], np.float64),
        "reading length": length,
    }
    if lm is not None:
        surprisal = -np.array([lm.score(r["text"]) for r in rows])
        keys["LM surprisal"] = surprisal
        keys["LM surprisal per character"] = surprisal / (length + 1)
    if rows and rows[0]["committee"] is not None:
        keys["committee disagreement"] = np.array([edit_distance(r["text"], r["committee"]) for r in rows], np.float64)
    return keys


def fit_poisson(features: np.ndarray, counts: np.ndarray, ridge: float = RIDGE) -> dict:
    """Poisson regression (log link) of ``counts`` on standardised ``features``: Newton's method with step halving.

    Returns the standardisation and the weights (intercept last), for ``predict_poisson``.
    """
    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    x = np.column_stack([(features - mean) / scale, np.ones(len(features))])
    penalty = np.full(x.shape[1], ridge)
    penalty[-1] = 0.0

    def objective(w: np.ndarray) -> float:  # penalised log-likelihood, up to a constant
        eta = np.clip(x @ w, -30, 30)
        return float(counts @ eta - np.exp(eta).sum() - 0.5 * penalty @ w ** 2)

    def derivatives(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu = np.exp(np.clip(x @ w, -30, 30))
        return x.T @ (counts - mu) - penalty * w, x.T @ (x * mu[:, None]) + np.diag(penalty)

    start = np.zeros(x.shape[1])
    start[-1] = np.log(max(counts.mean(), 1e-6))
    weights = maximise_by_newton(objective, derivatives, start)
    return {"mean": mean.tolist(), "scale": scale.tolist(), "weights": weights.tolist()}


def predict_poisson(fit: dict, features: np.ndarray) -> np.ndarray:
    """Expected errors per line under a ``fit_poisson`` fit."""
    x = (features - np.array(fit["mean"])) / np.array(fit["scale"])
    return np.exp(np.clip(x @ np.array(fit["weights"][:-1]) + fit["weights"][-1], -30, 30))


def capture_curve(suspicion: np.ndarray, errors: np.ndarray) -> np.ndarray:
    """Share of all errors found after reviewing the first k lines (k = 0..n), most suspect first."""
    return np.array([error_share_of_lowest(-suspicion, errors, k / len(errors)) for k in range(len(errors) + 1)])


def measure(keys: dict[str, np.ndarray], errors: np.ndarray, fraction: float) -> tuple[list[dict], dict, np.ndarray]:
    """The table's rows (one a key, the fitted combination, random, best possible), the fits, and the
    combination's out-of-half predictions (each half ranked by the fit on the other)."""
    half = len(errors) // 2
    parts = {"all": slice(None), "first_half": slice(0, half), "second_half": slice(half, None)}

    def shares(suspicion: np.ndarray) -> dict:
        return {name: round(error_share_of_lowest(-suspicion[part], errors[part], fraction), 4)
                for name, part in parts.items()}

    rows = [{"key": name, **shares(values), "description": DESCRIPTIONS[name]} for name, values in keys.items()]
    features_used = [name for name in keys if name != SERVED]  # the served confidence is E's order again
    features = np.column_stack([keys[name] for name in features_used])
    on_first = fit_poisson(features[:half], errors[:half])
    on_second = fit_poisson(features[half:], errors[half:])
    crossed = np.concatenate([predict_poisson(on_second, features[:half]), predict_poisson(on_first, features[half:])])
    rows.append({"key": FITTED, **shares(crossed), "description":
                 "second half: fitted on the first; first half: fitted on the second; all: each half by the other's fit"})
    rows.append({"key": "random order", **{name: fraction for name in parts}, "description": "expected share"})
    rows.append({"key": "best possible", **{name: round(best_error_share(errors[part], fraction), 4)
                                             for name, part in parts.items()},
                 "description": "lines ranked by their own errors"})
    fits = {"features": features_used, "ridge": RIDGE, "fitted_on_first_half": on_first,
            "fitted_on_second_half": on_second}
    return rows, fits, crossed


def plot(keys: dict[str, np.ndarray], crossed: np.ndarray, errors: np.ndarray, rows: list[dict], fraction: float,
         title: str, path: Path) -> str:
    """Error-capture curves for E, the best other key (on all lines), random and perfect; returns that key."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    candidates = [r for r in rows if r["key"] not in (SERVED, E, "random order", "best possible")]
    best_other = max(candidates, key=lambda r: r["all"])["key"]
    curves = {**{name: keys[name] for name in keys}, FITTED: crossed}
    share = {r["key"]: r["all"] for r in rows}
    reviewed = np.arange(len(errors) + 1) / len(errors)
    fig, ax = plt.subplots(figsize=(7.5, 5))
    ax.plot(reviewed, capture_curve(errors.astype(np.float64), errors), color="black", lw=1.2,
            label=f"perfect (errors known): {100 * share['best possible']:.1f}%")
    ax.plot(reviewed, capture_curve(keys[E], errors), color="C0", lw=1.6,
            label=f"line confidence, exp(-E): {100 * share[E]:.1f}%")
    ax.plot(reviewed, capture_curve(curves[best_other], errors), color="C1", lw=1.2,
            label=f"best other: {best_other}: {100 * share[best_other]:.1f}%")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=0.8, label=f"random order: {100 * fraction:.0f}%")
    ax.axvline(fraction, color="grey", ls=":", lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="share of lines reviewed, most suspect first",
           ylabel="share of all character errors found", title=title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="lower right", title=f"errors in the first {100 * fraction:.0f}% of lines",
              title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return best_other


def table(rows: list[dict]) -> str:
    lines = [f"{'key':<42} {'all lines':>9} {'1st half':>9} {'2nd half':>9}"]
    for r in rows:
        lines.append(f"{r['key']:<42} {100 * r['all']:>8.1f}% {100 * r['first_half']:>8.1f}% "
                     f"{100 * r['second_half']:>8.1f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.confidence_ranking", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("book", metavar="BOOK_DIR", help="one book's line folder (NAME.png + NAME.gt.txt), or a manifest")
    parser.add_argument("--model", type=Path, required=True, help="the .onnx model whose confidences are ranked")
    parser.add_argument("--committee", type=Path, help="a second .onnx model: adds the committee disagreement key")
    parser.add_argument("--lm", type=Path, help="a character language model (.npz): adds the LM surprisal keys")
    parser.add_argument("--fraction", type=float, default=0.1, help="the share of lines a reviewer reads (default 0.1)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads per model")
    parser.add_argument("--json", type=Path, default=RESULTS / "confidence-ranking.json",
                        help="where the results go; the plot goes beside it (.png)")
    args = parser.parse_args(argv)
    if not 0 < args.fraction < 1:
        parser.error("--fraction must lie between 0 and 1")

    began = time.perf_counter()
    samples = select_lines([args.book])
    model = Recognizer(args.model, threads=args.threads)
    committee = Recognizer(args.committee, threads=args.threads) if args.committee else None
    lm = CharacterLanguageModel.load(args.lm) if args.lm else None
    kept, rows = read_book(model, samples, committee)
    if len(kept) < 20:
        parser.error(f"{len(kept)} readable lines in {args.book}: too few to rank and halve")
    errors = np.array([r["errors"] for r in rows], np.float64)
    if errors[: len(errors) // 2].sum() == 0 or errors[len(errors) // 2:].sum() == 0:
        parser.error("a half of the book has no character error: nothing to rank")
    keys = suspicions(rows, lm)
    table_rows, fits, crossed = measure(keys, errors, args.fraction)
    references = sum(len(s.text) for s in kept)  # an indication only: the errors are against normalised text
    print(f"{len(kept)} lines of {args.book} ({len(samples) - len(kept)} unreadable), {int(errors.sum())} character "
          f"errors (about {100 * errors.sum() / max(references, 1):.2f}% CER), "
          f"{int((errors > 0).sum())} lines with any; load average {os.getloadavg()[0]:.1f}")
    print(f"share of all character errors in the {100 * args.fraction:.0f}% of lines each key ranks most suspect:")
    print(table(table_rows))

    args.json.parent.mkdir(parents=True, exist_ok=True)
    picture = args.json.with_suffix(".png")
    best_other = plot(keys, crossed, errors, table_rows, args.fraction,
                      f"{args.model.name} on {Path(args.book).name} ({len(kept)} lines)", picture)
    half = len(kept) // 2
    result = {
        "book": args.book, "model": args.model.name, "committee": args.committee.name if args.committee else None,
        "lm": args.lm.name if args.lm else None, "arguments": {k: str(v) for k, v in vars(args).items()},
        "lines": len(kept), "unreadable": len(samples) - len(kept), "fraction": args.fraction,
        "halves": {"first_half": {"lines": half, "first": kept[0].image_path.name,
                                  "errors": int(errors[:half].sum())},
                   "second_half": {"lines": len(kept) - half, "first": kept[half].image_path.name,
                                   "errors": int(errors[half:].sum())}},
        "character_errors": int(errors.sum()), "lines_with_errors": int((errors > 0).sum()),
        "rows": table_rows, "best_other_key": best_other, "poisson": fits,
        "machine": machine(), "load_average": os.getloadavg(), "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "seconds": round(time.perf_counter() - began, 1),
    }
    args.json.write_text(json.dumps(result, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.json} and {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
