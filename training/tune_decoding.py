"""Choose how a model reads a book: greedy, or beam search with a character LM, on the book's reviewed lines.

    python -m training.tune_decoding --model models/arabic-crnn-v2-int8.onnx --lines REVIEWED_DIR \\
        --lm models/arabic-char-lm.npz --json decoding.json
    python -m training.tune_decoding --model adapted-int8.onnx --lines HELDOUT_DIR \\
        --book-lm-corpus ../shared/datasets/openiti-gs datasets/corpus --book-lm-exclude IbnQutayba \\
        --book-lm-lines TRAINED_ON_DIR --json decoding.json

A book's settings are its own habit (issue 15: the LM weight and bonus chosen on one book's lines
hurt four others), so they are chosen per book, on lines a reviewer corrected. The model reads
the lines once; greedy decoding and the beam search (beam fixed at the product default) with each
LM weight ``alpha`` and bonus per character ``beta`` of a small grid read its outputs; the lowest
CER wins. Greedy wins ties: no LM, and no beam search, unless it reads these lines better. ``alpha``
0 is the beam search with the bonus alone.

The book LM (``--book-lm-corpus``): ``training.char_lm`` built on the general text (the book's own
files excluded) plus the text of the lines given by ``--book-lm-lines`` and nothing else of the book.
Choose its weight on other lines than those (an LM that read a line knows it by heart); the
order and pruning are the ``--lm`` file's.

Writes the table and the choice (``--json``); prints the table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

from recognition.beam_search import BeamSearchSettings, CTCBeamSearch
from recognition.char_lm import CharacterLanguageModel
from recognition.ctc import decode_line
from recognition.evaluation import Evaluation
from recognition.line_data import SkipReport, iter_samples
from recognition.recognizer import Recognizer
from recognition.text import normalize_text
from training import char_lm

DEFAULT_LM = Path(__file__).resolve().parent.parent / "models" / "arabic-char-lm.npz"
# The grid: the weights around what the held-out book chose with the base model (0.2, 1.5), alpha 0 for the
# beam search with the bonus alone. The search's speed settings are the shipped ones, fixed (issue 15).
ALPHAS = (0.0, 0.1, 0.15, 0.2, 0.3, 0.4)
BETAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)
BEAM = BeamSearchSettings().beam
SPEED = {"prune": 5.0, "blank_skip": 0.99, "min_prob": 0.01, "top_k": 4}
GREEDY = "greedy"


def model_outputs(model: Path | Recognizer, samples) -> tuple[Recognizer, list[np.ndarray], list[float]]:
    """Each line's softmax output and the model's milliseconds for it (image to output, batch 1, one thread)."""
    recognizer = model if isinstance(model, Recognizer) else Recognizer(model, threads=1)
    recognizer.warm_up()
    outputs, ms = [], []
    for sample in samples:
        began = time.perf_counter()
        outputs.extend(recognizer.probabilities([recognizer.prepare(sample.image_path)]))
        ms.append((time.perf_counter() - began) * 1000)
    return recognizer, outputs, ms


def read(recognizer: Recognizer, outputs, decoder) -> list:
    """The lines as served (the model's calibration and book conventions), read by ``decoder`` (None: greedy)."""
    return [decode_line(p, recognizer.info.alphabet, recognizer.info.mirror, recognizer.calibration,
                        recognizer.conventions, decoder) for p in outputs]


def score(samples, results) -> dict:
    evaluation = Evaluation()
    evaluation.add(samples, results)
    return {"cer": evaluation.cer, "wer": evaluation.wer, "lines": evaluation.lines}


def settings_of(row: dict) -> BeamSearchSettings | None:
    """The search settings of a table row (None: greedy)."""
    if row["decoder"] == GREEDY:
        return None
    return BeamSearchSettings(beam=row["beam"], alpha=row["alpha"], beta=row["beta"], **SPEED)


def decoder_for(recognizer: Recognizer, row: dict, lm: CharacterLanguageModel | None):
    """The decoder a table row stands for (None: greedy); ``lm`` is left out where the row's weight is 0."""
    settings = settings_of(row)
    if settings is None:
        return None
    return CTCBeamSearch(recognizer.info.alphabet, lm if settings.alpha > 0 else None, settings)


def tune(recognizer: Recognizer, outputs, samples, lm: CharacterLanguageModel | None, alphas=ALPHAS, betas=BETAS,
         beam: int = BEAM, log=None) -> tuple[dict, list[dict]]:
    """The decoding with the lowest CER on these lines, and the table of every try (greedy first).

    Greedy wins ties, then the grid's order (alpha, then beta, ascending): the simplest reading that
    does best. Without ``lm`` only alpha 0 is tried.
    """
    rows = [{"decoder": GREEDY, "alpha": None, "beta": None, "beam": None,
             **score(samples, read(recognizer, outputs, None))}]
    for alpha, beta in itertools.product(alphas if lm is not None else (0.0,), betas):
        row = {"decoder": "beam + LM" if alpha > 0 else "beam", "alpha": alpha, "beta": beta, "beam": beam}
        rows.append({**row, **score(samples, read(recognizer, outputs, decoder_for(recognizer, row, lm)))})
        if log:
            log(f"  alpha {alpha} beta {beta}: CER {100 * rows[-1]['cer']:.3f}%")
    best = min(rows, key=lambda r: r["cer"])  # min keeps the first of equals: greedy, then grid order
    return best, rows


def reviewed_text(samples) -> list[str]:
    """The normalised, non-empty transcriptions of reviewed lines (what a book LM may add)."""
    return [t for t in (normalize_text(s.text) for s in samples) if t]


def build_book_lm(general_lines: list[str], reviewed_lines: list[str], order: int,
                  min_count: int = 1) -> CharacterLanguageModel:
    """``training.char_lm`` on the general text plus the reviewed lines' text, and nothing else of the book.

    ``general_lines`` must already leave the book out (``char_lm.read_lines(..., exclude=[book])``).
    """
    header, tables = char_lm.build(general_lines + reviewed_lines, order, min_count)
    header["training_text"] = {"lines": len(general_lines) + len(reviewed_lines), "general_lines": len(general_lines),
                               "reviewed_lines": len(reviewed_lines)}
    return CharacterLanguageModel(header, tables, "book LM (in memory)")


def lm_shape(lm: CharacterLanguageModel) -> tuple[int, int]:
    """The order and pruning of an LM file, for a book LM built alike."""
    return lm.order, int(lm.header.get("pruning", {}).get("min_count", 1))


def format_table(rows: list[dict], chosen: dict) -> str:
    lines = [f"{'decoder':<10} {'alpha':>6} {'beta':>5} {'CER':>8} {'WER':>8}"]
    for r in rows:
        mark = "  <- chosen" if r is chosen else ""
        alpha = "" if r["alpha"] is None else r["alpha"]
        beta = "" if r["beta"] is None else r["beta"]
        lines.append(f"{r['decoder']:<10} {alpha:>6} {beta:>5} {100 * r['cer']:>7.3f}% {100 * r['wer']:>7.2f}%{mark}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.tune_decoding", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the ONNX model (an adapted one, or the base)")
    parser.add_argument("--lines", nargs="+", required=True,
                        help="reviewed lines to choose on: folders of NAME.png + NAME.gt.txt, or sample lists")
    parser.add_argument("--lm", type=Path, default=DEFAULT_LM, help="the character LM (default %(default)s)")
    parser.add_argument("--book-lm-corpus", nargs="+", default=[],
                        help="build a book LM instead: this general text (training.char_lm) plus --book-lm-lines")
    parser.add_argument("--book-lm-exclude", nargs="*",
                        help="leave out corpus files whose path contains any of these (the book's own files); "
                             "required with --book-lm-corpus (given with no value: leave nothing out)")
    parser.add_argument("--book-lm-lines", nargs="*", default=[],
                        help="reviewed lines whose text the book LM adds (not the --lines chosen on)")
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default %(default)s)")
    parser.add_argument("--json", type=Path, help="write the choice and the table here")
    args = parser.parse_args(argv)
    # Book LM options without a book LM would be ignored; a book LM that may hold the book's own text (the
    # lines chosen on among it) would flatter its choice.
    if not args.book_lm_corpus and (args.book_lm_lines or args.book_lm_exclude is not None):
        parser.error("--book-lm-lines and --book-lm-exclude only apply with --book-lm-corpus")
    if args.book_lm_corpus and args.book_lm_exclude is None:
        parser.error("--book-lm-corpus needs --book-lm-exclude: the book's own files, left out of the book LM")

    samples = list(iter_samples(args.lines, SkipReport()))
    if not samples:
        parser.error(f"no lines in {args.lines}")
    lm = CharacterLanguageModel.load(args.lm)
    lm_info = {"file": str(args.lm)}
    if args.book_lm_corpus:
        given = list(iter_samples(args.book_lm_lines, SkipReport())) if args.book_lm_lines else []
        overlap = {Path(s.image_path).resolve() for s in given} & {Path(s.image_path).resolve() for s in samples}
        if overlap:
            parser.error(f"{len(overlap)} lines are both chosen on and in the book LM: the choice would flatter it")
        general, sources = char_lm.read_lines(args.book_lm_corpus, args.book_lm_exclude)
        order, min_count = lm_shape(lm)
        lm = build_book_lm(general, reviewed_text(given), order, min_count)
        lm_info = {"book_lm": lm.header["training_text"], "sources": sources, "excluded": args.book_lm_exclude,
                   "order": order, "min_count": min_count}
    recognizer, outputs, _ = model_outputs(args.model, samples) if args.threads == 1 else \
        model_outputs(Recognizer(args.model, threads=args.threads), samples)
    chosen, rows = tune(recognizer, outputs, samples, lm)
    print(format_table(rows, chosen))
    print(f"chosen: {chosen['decoder']}" + ("" if chosen["decoder"] == GREEDY else
                                            f" (alpha {chosen['alpha']}, beta {chosen['beta']}, beam {chosen['beam']})"))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), "lines": len(samples), "lm": lm_info,
                                         "speed_settings": SPEED, "chosen": chosen, "table": rows},
                                        ensure_ascii=False, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
