"""A character language model in CTC beam search: the CER it gains against the milliseconds it costs (issue 15).

    python -m bench.language_model ../shared/datasets/openiti-gs --book IbnQutayba \\
        --corpus ../shared/datasets/openiti-gs datasets/corpus

The held-out book's lines, in file order, are cut in two halves. Everything is
chosen on the first (the "tune" half): the LM's order and pruning (models built
in memory from ``--corpus``, the book excluded, as ``training.char_lm`` builds
them), its weight alpha and bonus beta (a grid at beam 8), then the beam. The
second half (the "test" half), never looked at while choosing, is what the
table reports: greedy decoding, the beam search without an LM (alone, and with
the bonus per character that suits it best on the tune half: a control, to
tell the LM's part from the bonus's) and with the chosen LM, per model, each
model choosing its own settings. The whole book is reported too, for
comparison with the model cards (it includes the tune half: optimistic for the
LM rows). ``--cross-check BOOK...`` reads other books with the settings chosen
here, the LM rebuilt without them: the models trained on those books, so it is
no measure of accuracy, only of whether weights chosen on one book's habits
(its spacing) carry to another's. ``--reuse JSON`` takes the settings of an
earlier run (no grid), to time again.

Time: the model runs once per line (one onnxruntime thread, batch 1; its
milliseconds per line are reported beside), then each decoder reads the
test half's softmax outputs in turn, three rounds interleaved so that a burst
of load hits them alike; a line's time is its best of the three (decoders keep
their caches across lines, as in a server). Python is one thread. The
confidences are checked on the test half too (calibration errors, and the
share of the errors in the lowest-confidence 10% of lines:
``training.calibrate``), since their calibration was fitted on greedy
readings. Prints a table, writes ``bench/results/language_model.json`` and a
plot of CER against milliseconds per line (model + decoding).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

from bench.lines import select_lines
from bench.machine import machine
from recognition.beam_search import BeamSearchSettings, CTCBeamSearch
from recognition.char_lm import CharacterLanguageModel
from recognition.ctc import decode_line
from recognition.metrics import edit_operations
from recognition.recognizer import Recognizer
from recognition.text import normalize_text
from training import char_lm
from training.calibrate import confidence_measures, outcome
from training.tune_decoding import SPEED, model_outputs, read, score

RESULTS = Path(__file__).parent / "results"
MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODELS = (MODELS_DIR / "arabic-crnn-v2-int8.onnx", MODELS_DIR / "arabic-crnn-swift-int8.onnx")
# What the grid walks (the search's speed settings are fixed: training.tune_decoding.SPEED, shared with the
# per-book choice there).
ORDERS = (4, 5, 6)
MIN_COUNTS = (1, 2)
ALPHAS = (0.1, 0.15, 0.2, 0.3, 0.4)
BETAS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5)
BEAMS = (2, 4, 8, 16)


def space_errors(samples, results) -> tuple[int, int]:
    """Character errors, and how many of them are a space dropped, added or put for another character."""
    errors = spaces = 0
    for sample, result in zip(samples, results):
        for op, ref, hyp in edit_operations(normalize_text(sample.text), normalize_text(result.text)):
            if op != "equal":
                errors += 1
                spaces += " " in (ref, hyp)
    return errors, spaces


def choose(recognizer: Recognizer, outputs, samples, lms: dict, log) -> tuple[dict, list[dict]]:
    """The settings with the lowest CER on these lines (ties: the first met in grid order), and every try."""
    tries = []
    for (order, min_count), alpha, beta in itertools.product(lms, ALPHAS, BETAS):
        settings = BeamSearchSettings(beam=8, alpha=alpha, beta=beta, **SPEED)
        cer = score(samples, read(recognizer, outputs, CTCBeamSearch(recognizer.info.alphabet, lms[order, min_count],
                                                                     settings)))["cer"]
        tries.append({"order": order, "min_count": min_count, "alpha": alpha, "beta": beta, "beam": 8, "cer": cer})
        log(f"  order {order} min-count {min_count} alpha {alpha} beta {beta}: {100 * cer:.3f}%")
    best = min(tries, key=lambda t: t["cer"])
    for beam in BEAMS:
        if beam == 8:
            continue
        settings = BeamSearchSettings(beam=beam, alpha=best["alpha"], beta=best["beta"], **SPEED)
        lm = lms[best["order"], best["min_count"]]
        cer = score(samples, read(recognizer, outputs, CTCBeamSearch(recognizer.info.alphabet, lm, settings)))["cer"]
        tries.append({**best, "beam": beam, "cer": cer})
        log(f"  beam {beam}: {100 * cer:.3f}%")
    chosen = min(tries, key=lambda t: t["cer"])  # beam 8 first among equals: it was tried first
    return chosen, tries


def choose_bonus(recognizer: Recognizer, outputs, samples, beam: int, log) -> tuple[float, list[dict]]:
    """The control: the best bonus per character for the beam search without an LM (on these lines)."""
    tries = []
    for beta in BETAS:
        decoder = CTCBeamSearch(recognizer.info.alphabet, None, BeamSearchSettings(beam=beam, alpha=0.0, beta=beta, **SPEED))
        tries.append({"beta": beta, "beam": beam, "cer": score(samples, read(recognizer, outputs, decoder))["cer"]})
        log(f"  no LM, beta {beta}: {100 * tries[-1]['cer']:.3f}%")
    return min(tries, key=lambda t: t["cer"])["beta"], tries


def make_decoders(recognizer: Recognizer, beam: int, bonus: float, lm: CharacterLanguageModel,
                  settings: BeamSearchSettings) -> dict:
    alphabet = recognizer.info.alphabet
    return {"greedy": None,
            "beam": CTCBeamSearch(alphabet, None, BeamSearchSettings(beam=beam, beta=0.0, **SPEED)),
            "beam + bonus": CTCBeamSearch(alphabet, None, BeamSearchSettings(beam=beam, beta=bonus, **SPEED)),
            "beam + LM": CTCBeamSearch(alphabet, lm, settings)}


def decoding_ms(recognizer: Recognizer, outputs, decoders: dict, rounds: int = 3) -> dict[str, list[float]]:
    """Per decoder, each line's best time over ``rounds`` interleaved rounds (ms)."""
    best = {name: [float("inf")] * len(outputs) for name in decoders}
    for _ in range(rounds):
        for name, decoder in decoders.items():
            for i, p in enumerate(outputs):
                began = time.perf_counter()
                decode_line(p, recognizer.info.alphabet, recognizer.info.mirror, recognizer.calibration,
                            recognizer.conventions, decoder)
                best[name][i] = min(best[name][i], (time.perf_counter() - began) * 1000)
    return best


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    markers = {"greedy": "o", "beam": "s", "beam + bonus": "D", "beam + LM": "^"}
    for colour, model in enumerate(dict.fromkeys(r["model"] for r in rows)):
        mine = [r for r in rows if r["model"] == model]
        xs = [r["model_ms"] + r["decoding_ms"] for r in mine]
        ax.plot(xs, [100 * r["test_cer"] for r in mine], color="0.75", zorder=1)
        for r, x in zip(mine, xs):
            ax.scatter([x], [100 * r["test_cer"]], marker=markers[r["decoder"]], color=f"C{colour}", s=60, zorder=2,
                       label=f"{model}: {r['decoder']}")
    ax.set_xlabel("ms per line, one thread (model + decoding; mean over the test half)")
    ax.set_ylabel("CER % on the test half (395 lines)")
    ax.set_title("Greedy vs beam search vs beam search + character LM (held-out book)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.language_model", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="the line dataset folder holding the held-out book")
    parser.add_argument("--book", default="IbnQutayba", help="the held-out book (a source name part)")
    parser.add_argument("--corpus", nargs="+", required=True, help="the LM's text (the book is excluded)")
    parser.add_argument("--models", nargs="+", default=[str(p) for p in DEFAULT_MODELS if p.exists()])
    parser.add_argument("--cross-check", nargs="*", default=[], metavar="BOOK",
                        help="also read these books with the chosen settings, the LM rebuilt without them")
    parser.add_argument("--reuse", type=Path, default=None, metavar="JSON",
                        help="take each model's settings from an earlier run's results (no grid: to time again)")
    parser.add_argument("--out", default=str(RESULTS / "language_model.json"))
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    samples = select_lines([args.data], [args.book])
    if len(samples) < 2:
        parser.error(f"no lines of {args.book} in {args.data}")
    half = len(samples) // 2
    tune, test = samples[:half], samples[half:]
    lines, sources = char_lm.read_lines(args.corpus, [args.book])
    lms, lm_info = {}, {}
    grid = list(itertools.product(ORDERS, MIN_COUNTS))
    earlier = {run["model"]: run for run in json.loads(args.reuse.read_text())["runs"]} if args.reuse else {}
    for order, min_count in grid if not earlier else {(r["chosen"]["order"], r["chosen"]["min_count"])
                                                       for r in earlier.values()}:
        began = time.perf_counter()
        header, tables = char_lm.build(lines, order, min_count)
        lms[order, min_count] = CharacterLanguageModel(header, tables)
        lm_info[f"{order}/{min_count}"] = {"ngrams": sum(header["ngrams"]), "build_s": round(time.perf_counter() - began, 1)}
    log(f"{len(samples)} lines of {args.book}: tune {len(tune)}, test {len(test)}; LM text {len(lines)} lines "
        f"from {len(sources)} sources; load average {os.getloadavg()[0]:.1f}")

    rows, runs, cross_rows = [], [], []
    for model in args.models:
        name = Path(model).stem
        recognizer, outputs, model_ms = model_outputs(Path(model), samples)
        if name in earlier:
            run = earlier[name]
            chosen, tries, bonus, bonus_tries = run["chosen"], run["tries"], run["bonus_without_lm"], run["bonus_tries"]
            log(f"{name}: model {statistics.mean(model_ms):.2f} ms per line; settings chosen by {args.reuse}")
        else:
            log(f"{name}: model {statistics.mean(model_ms):.2f} ms per line; choosing on the tune half")
            chosen, tries = choose(recognizer, outputs[:half], tune, lms, log)
            bonus, bonus_tries = choose_bonus(recognizer, outputs[:half], tune, chosen["beam"], log)
        lm = lms[chosen["order"], chosen["min_count"]]
        settings = BeamSearchSettings(beam=chosen["beam"], alpha=chosen["alpha"], beta=chosen["beta"], **SPEED)
        decoders = make_decoders(recognizer, chosen["beam"], bonus, lm, settings)
        times = decoding_ms(recognizer, outputs[half:], decoders)
        for decoder_name, decoder in decoders.items():
            results = read(recognizer, outputs, decoder)
            test_score, tune_score = score(test, results[half:]), score(tune, results[:half])
            whole = score(samples, results)
            # Do the confidences (calibrated on greedy readings of the tune half) still mean what they say?
            confidences = confidence_measures(results[half:], [outcome(s.text, r) for s, r in zip(test, results[half:])])
            errors, spaces = space_errors(test, results[half:])
            rows.append({"model": name, "decoder": decoder_name, "test_cer": test_score["cer"],
                         "test_errors": errors, "test_space_errors": spaces,
                         **{key: confidences[key] for key in ("character_ece", "line_ece", "error_share_lowest_10pct")},
                         "test_wer": test_score["wer"], "tune_cer": tune_score["cer"], "whole_cer": whole["cer"],
                         "whole_wer": whole["wer"], "decoding_ms": statistics.mean(times[decoder_name]),
                         "decoding_median_ms": statistics.median(times[decoder_name]),
                         "model_ms": statistics.mean(model_ms[half:])})
        for book in args.cross_check:
            # Another book's lines, read with these settings and an LM that never read that book either.
            other = select_lines([args.data], [book])
            other_lm = CharacterLanguageModel(*char_lm.build(char_lm.read_lines(args.corpus, [args.book, book])[0],
                                                             chosen["order"], chosen["min_count"]))
            _, other_outputs, _ = model_outputs(Path(model), other)
            for decoder_name, decoder in make_decoders(recognizer, chosen["beam"], bonus, other_lm, settings).items():
                other_score = score(other, read(recognizer, other_outputs, decoder))
                cross_rows.append({"model": name, "book": book, "decoder": decoder_name, "lines": len(other),
                                   "cer": other_score["cer"], "wer": other_score["wer"]})
        runs.append({"model": name, "chosen": chosen, "tries": tries, "bonus_without_lm": bonus,
                     "bonus_tries": bonus_tries})
        log(f"{name}: chose {chosen}")

    print(f"\n{'model':<24} {'decoder':<12} {'test CER':>9} {'test WER':>9} {'tune CER':>9} {'whole CER':>10}"
          f" {'decode ms':>10} {'+ms vs greedy':>13} {'model ms':>9} {'char ECE':>8} {'line ECE':>8} {'errs low10%':>11}"
          f" {'errors (spaces)':>15}")
    for row in rows:
        greedy = next(r for r in rows if r["model"] == row["model"] and r["decoder"] == "greedy")
        row["added_ms"] = row["decoding_ms"] - greedy["decoding_ms"]
        print(f"{row['model']:<24} {row['decoder']:<12} {100 * row['test_cer']:>8.2f}% {100 * row['test_wer']:>8.2f}%"
              f" {100 * row['tune_cer']:>8.2f}% {100 * row['whole_cer']:>9.2f}% {row['decoding_ms']:>10.2f}"
              f" {row['added_ms']:>13.2f} {row['model_ms']:>9.2f} {row['character_ece']:>8.4f} {row['line_ece']:>8.4f}"
              f" {100 * row['error_share_lowest_10pct']:>10.1f}% {row['test_errors']:>7} ({row['test_space_errors']})")
    if cross_rows:
        print(f"\nother books (the LM rebuilt without them; the models trained on them):\n"
              f"{'model':<24} {'book':<14} {'decoder':<12} {'lines':>5} {'CER':>7} {'WER':>7}")
        for row in cross_rows:
            print(f"{row['model']:<24} {row['book']:<14} {row['decoder']:<12} {row['lines']:>5}"
                  f" {100 * row['cer']:>6.2f}% {100 * row['wer']:>6.2f}%")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"book": args.book, "tune_lines": len(tune), "test_lines": len(test),
              "tune_first": str(tune[0].image_path.name), "test_first": str(test[0].image_path.name),
              "lm_text": {"lines": len(lines), "sources": sources, "excluded": [args.book]}, "lms": lm_info,
              "speed_settings": SPEED, "grid": {"orders": ORDERS, "min_counts": MIN_COUNTS, "alphas": ALPHAS,
                                                "betas": BETAS, "beams": BEAMS},
              "machine": machine(), "load_average": os.getloadavg(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
              "rows": rows, "cross_check": cross_rows, "runs": runs}
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    plot(rows, out.with_suffix(".png"))
    log(f"\nwrote {out} and {out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
