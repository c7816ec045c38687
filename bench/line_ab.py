"""Before and after in one run: another checkout's line path against this one's, line by line.

    git worktree add ../baseline 5139fff      # the code to compare with
    python -m bench.line_ab ../shared/datasets/openiti-gs --sources IbnQutayba --max-lines 200 \
        --baseline ../baseline --pairs ../baseline/models/arabic-crnn-swift-int8.onnx:models/arabic-crnn-swift-int8.onnx

The baseline's ``recognition`` package is copied under another name and
imported beside this checkout's, so both read the same lines in the same
process. Each line is read by the baseline (its code, its model file) and by
this checkout (its code, its model), the order alternating from line to line,
each stage timed in CPU milliseconds (preprocess, model, decode) at batch 1,
one onnxruntime thread. On a machine shared with other work, figures taken
this way move together, and their ratios are what to read. The readings must
be identical (text, confidence, every character's confidence), or the bench
says how many differ. Writes ``bench/results/line_ab.json``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.lines import select_lines
from recognition.image import load_grey
from recognition.recognizer import Recognizer

RESULTS = Path(__file__).parent / "results"
STAGES = ("preprocess", "model", "decode", "line")


def import_baseline(checkout: Path, folder: Path):
    """The checkout's ``recognition`` package as ``recognition_baseline`` (its modules import each other
    relatively, so the copy is self-contained)."""
    shutil.copytree(checkout / "recognition", folder / "recognition_baseline",
                    ignore=shutil.ignore_patterns("__pycache__"))
    sys.path.insert(0, str(folder))
    recognizer = importlib.import_module("recognition_baseline.recognizer")
    ctc = importlib.import_module("recognition_baseline.ctc")
    if not recognizer.__file__.startswith(str(folder)):
        raise RuntimeError("the baseline package was not imported from its copy")
    return recognizer.Recognizer, ctc.decode_line


def reading(outcome) -> tuple:
    return outcome.text, outcome.confidence, tuple((c.char, c.confidence) for c in outcome.characters)


def compare(sides: dict, greys: list, repeats: int) -> tuple[dict, int]:
    """Median CPU ms by side and stage, and how many lines read differently."""
    for recognizer, _ in sides.values():
        recognizer.warm_up()
    (old, _), (new, _) = sides.values()
    differing = sum(reading(old.recognize([g])[0]) != reading(new.recognize([g])[0]) for g in greys)
    times = {(side, stage): [] for side in sides for stage in STAGES}
    turn = 0
    for _ in range(repeats):
        for grey in greys:
            for side in (list(sides) if turn % 2 == 0 else list(sides)[::-1]):
                recognizer, decode = sides[side]
                info = recognizer.info
                t0 = time.process_time()
                line = recognizer.prepare(grey)
                t1 = time.process_time()
                probs = recognizer.probabilities([line])[0]
                t2 = time.process_time()
                decode(probs, info.alphabet, info.mirror, recognizer.calibration, recognizer.conventions)
                t3 = time.process_time()
                for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
                    times[(side, stage)].append(1000 * seconds)
            turn += 1
    return {f"{side} {stage}": statistics.median(v) for (side, stage), v in times.items()}, differing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.line_ab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="line folders (NAME.png + NAME.gt.txt) or manifests")
    parser.add_argument("--baseline", required=True, type=Path, help="a checkout of the code to compare with")
    parser.add_argument("--pairs", nargs="+", required=True, metavar="BASELINE_MODEL:MODEL",
                        help="the model file the baseline reads with, and the one this checkout reads with")
    parser.add_argument("--sources", nargs="*", help="only these sources (e.g. the held-out book)")
    parser.add_argument("--max-lines", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="passes over the lines")
    parser.add_argument("--out", default=str(RESULTS / "line_ab.json"))
    args = parser.parse_args(argv)

    samples = select_lines(args.data, args.sources, at_most=args.max_lines)
    if not samples:
        parser.error("no lines found")
    greys = [load_grey(s.image_path) for s in samples]
    results = {"lines": len(samples), "baseline": str(args.baseline), "rows": []}
    status = 0
    with tempfile.TemporaryDirectory() as folder:
        BaselineRecognizer, baseline_decode = import_baseline(args.baseline, Path(folder))
        from recognition.ctc import decode_line

        for pair in args.pairs:
            old_model, new_model = pair.split(":", 1)
            sides = {"before": (BaselineRecognizer(old_model, threads=1, max_batch=1), baseline_decode),
                     "after": (Recognizer(new_model, threads=1, max_batch=1), decode_line)}
            medians, differing = compare(sides, greys, args.repeats)
            load = os.getloadavg()[0]
            results["rows"].append({"before": old_model, "after": new_model, "differing_lines": differing,
                                    "cpu_ms": medians, "load_average": load})
            status |= differing > 0
            print(f"\n{Path(new_model).stem}: {differing} of {len(greys)} lines read differently; load {load:.2f}")
            for stage in STAGES:
                before, after = medians[f"before {stage}"], medians[f"after {stage}"]
                print(f"  {stage:<10} {before:6.2f} -> {after:6.2f} CPU ms a line (x{after / before:.2f})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1), encoding="utf-8")
    return status


if __name__ == "__main__":
    sys.exit(main())
