"""Calibrate a model's confidences on a held-out book and store the maps in the model file.

    python -m training.calibrate models/arabic-crnn-v1.onnx ../shared/datasets/openiti-gs \\
        --sources IbnQutayba --out models

Recognises the lines, decodes them without calibration (raw scores, see
``recognition.ctc``), and fits two monotone maps (``recognition.calibration``)
on the first half of the lines in file order: raw character score -> chance
the character is right (isotonic), raw line score -> chance the line has no
error (logistic; a few hundred lines are too few for isotonic bins). The
second half is never seen by the fit and checks it: both halves are reported
(expected calibration error before and after, the share of all character
errors in the lowest-confidence 10% of lines, and the best any ranking could
reach). The maps are written into the ONNX file's metadata in place (a
temporary file beside it, then an atomic rename) and into its ``.json`` twin
if there is one. ``--out`` gets ``MODEL-calibration.json`` (the report) and
``MODEL-reliability.png``. ``--dry-run`` measures without touching the model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recognition.calibration import (
    METADATA_KEY,
    CalibrationError,
    ConfidenceCalibration,
    best_error_share,
    error_share_of_lowest,
    expected_calibration_error,
    fit_logistic_map,
    fit_monotone_map,
    reliability,
)
from recognition.ctc import LineResult
from recognition.line_data import LineSample, SkipReport, iter_samples, matches_source
from recognition.metrics import edit_operations
from recognition.text import normalize_text


@dataclass(frozen=True)
class Outcome:
    """What a reading got right, against its reference."""

    char_correct: tuple[bool, ...]  # one per recognised character, in logical order
    errors: int  # character edit distance to the reference

    @property
    def exact(self) -> bool:
        return self.errors == 0


def outcome(reference: str, result: LineResult) -> Outcome:
    """Per recognised character: was it aligned to the same reference character?

    Deletions (reference characters with no recognised one) count among the
    line's errors but belong to no recognised character.
    """
    ops = edit_operations(normalize_text(reference), result.text)
    correct = tuple(op == "equal" for op, _, hyp in ops if hyp is not None)
    return Outcome(correct, sum(op != "equal" for op, _, _ in ops))


def confidence_measures(results: Sequence[LineResult], outcomes: Sequence[Outcome]) -> dict:
    """How well the confidences of ``results`` point at errors and match observed rates."""
    char_conf = np.array([c.confidence for r in results for c in r.characters], np.float64)
    char_ok = np.array([ok for o in outcomes for ok in o.char_correct], np.float64)
    line_conf = np.array([r.confidence for r in results], np.float64)
    exact = np.array([o.exact for o in outcomes], np.float64)
    errors = np.array([o.errors for o in outcomes], np.float64)
    return {
        "lines": len(results),
        "characters": int(char_conf.size),
        "character_errors": int(errors.sum()),
        "recognised_characters_right": round(float(char_ok.mean()), 5) if char_ok.size else None,
        "lines_exactly_right": round(float(exact.mean()), 5) if exact.size else None,
        "character_ece": round(expected_calibration_error(char_conf, char_ok), 5),
        "line_ece": round(expected_calibration_error(line_conf, exact), 5),
        "error_share_lowest_10pct": round(error_share_of_lowest(line_conf, errors), 4),
        "error_share_best_possible": round(best_error_share(errors), 4),
        "error_share_random": 0.1,
        "character_reliability": reliability(char_conf, char_ok),
        "line_reliability": reliability(line_conf, exact),
    }


def fit(results: Sequence[LineResult], outcomes: Sequence[Outcome], fitted_on: str) -> ConfidenceCalibration:
    """Both maps from raw (uncalibrated) results: isotonic for characters, logistic for lines."""
    char_raw = np.array([c.confidence for r in results for c in r.characters], np.float64)
    char_ok = np.array([ok for o in outcomes for ok in o.char_correct], np.float64)
    line_raw = np.array([r.confidence for r in results], np.float64)
    exact = np.array([o.exact for o in outcomes], np.float64)
    return ConfidenceCalibration(fit_monotone_map(char_raw, char_ok), fit_logistic_map(line_raw, exact), fitted_on)


def write_calibration(model_path: Path, calibration: ConfidenceCalibration) -> None:
    """Put the calibration into the ONNX metadata (and the .json twin), each replaced atomically."""
    write_model_property(model_path, METADATA_KEY, calibration.to_json())


def write_model_property(model_path: Path, key: str, value: str) -> None:
    """Set one ``metadata_props`` entry of an ONNX model (and of its .json twin), each replaced atomically."""
    import onnx

    model = onnx.load(str(model_path))
    props = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    model.metadata_props.add(key=key, value=value)
    _replace_atomically(model_path, model.SerializeToString())
    twin = model_path.with_suffix(".json")
    if twin.exists():
        info = json.loads(twin.read_text(encoding="utf-8"))
        if info.get("name") == model_path.stem:  # the float model's twin, not its int8 sibling's
            info.setdefault("extra", {})[key] = value
            _replace_atomically(twin, (json.dumps(info, ensure_ascii=False, indent=1) + "\n").encode("utf-8"))


def _replace_atomically(path: Path, data: bytes) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def plot_reliability(report: dict, path: Path) -> None:
    """Reliability diagrams, characters and lines, for the fitted and the checking half."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, kind, outcome_name in ((axes[0], "character", "share of characters right"),
                                   (axes[1], "line", "share of lines exactly right")):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for half, style in (("fit", "o-"), ("check", "s-")):
            m = report[half]["calibrated"]
            rows = m[f"{kind}_reliability"]
            ax.plot([r["confidence"] for r in rows], [r["observed"] for r in rows], style, ms=4,
                    label=f"{half} half, calibrated (ECE {100 * m[f'{kind}_ece']:.1f}%)")
        raw = report["check"]["raw"]
        rows = raw[f"{kind}_reliability"]
        ax.plot([r["confidence"] for r in rows], [r["observed"] for r in rows], "x:", color="tab:red", ms=5,
                label=f"check half, raw (ECE {100 * raw[f'{kind}_ece']:.1f}%)")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"{kind} confidence (bin mean)", ylabel=outcome_name,
               title=f"{kind}s")
        ax.legend(fontsize=7, loc="upper left")
    figure.suptitle(f"{report['model']}: reliability on {report['source']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def calibrate(model: Path, samples: Sequence[LineSample], threads: int = 1) -> tuple[ConfidenceCalibration, dict]:
    """Fit on the first half of ``samples``, measure both halves; nothing is written."""
    from recognition.ctc import decode_line
    from recognition.image import ImageError
    from recognition.recognizer import Recognizer

    recognizer = Recognizer(model, threads=threads)
    kept, lines = [], []
    for sample in samples:
        try:
            lines.append(recognizer.prepare(sample.image_path))
            kept.append(sample)
        except ImageError:
            continue
    probs = recognizer.probabilities(lines)
    info = recognizer.info

    def decode(calibration):
        # The model's own conventions too: what is calibrated is what it serves.
        return [decode_line(p, info.alphabet, info.mirror, calibration, info.conventions) for p in probs]

    raw = decode(None)
    outcomes = [outcome(s.text, r) for s, r in zip(kept, raw)]
    half = len(kept) // 2
    sources = sorted({s.source for s in kept})
    calibration = fit(raw[:half], outcomes[:half], f"{', '.join(sources)}: first {half} of {len(kept)} lines")
    calibrated = decode(calibration)
    report = {"model": model.name, "source": ", ".join(sources), "lines": len(kept),
              "calibration": json.loads(calibration.to_json())}
    for name, part in (("fit", slice(0, half)), ("check", slice(half, None)), ("all", slice(None))):
        report[name] = {"lines": len(outcomes[part]),
                        "raw": confidence_measures(raw[part], outcomes[part]),
                        "calibrated": confidence_measures(calibrated[part], outcomes[part])}
    return calibration, report


def summary_table(report: dict) -> str:
    rows = ["| lines | n | char ECE raw -> calibrated | line ECE raw -> calibrated | errors in lowest 10% "
            "(best possible) |", "|---|---:|---:|---:|---:|"]
    for name in ("fit", "check", "all"):
        raw, cal = report[name]["raw"], report[name]["calibrated"]
        rows.append(f"| {name} | {report[name]['lines']} | {100 * raw['character_ece']:.2f}% -> "
                    f"{100 * cal['character_ece']:.2f}% | {100 * raw['line_ece']:.2f}% -> {100 * cal['line_ece']:.2f}% "
                    f"| {100 * cal['error_share_lowest_10pct']:.1f}% ({100 * cal['error_share_best_possible']:.1f}%) |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="an .onnx model; its metadata is updated in place")
    parser.add_argument("data", nargs="+", help="line folders (NAME.png + NAME.gt.txt) or TSV/CSV manifests")
    parser.add_argument("--sources", nargs="+", required=True,
                        help="the held-out book(s) to calibrate on (names or name parts); never a training book")
    parser.add_argument("--out", type=Path, help="folder for MODEL-calibration.json and MODEL-reliability.png")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--dry-run", action="store_true", help="measure and report, do not touch the model")
    args = parser.parse_args(argv)

    samples = [s for s in iter_samples(args.data, SkipReport()) if matches_source(s.source, args.sources)]
    if len(samples) < 40:
        parser.error(f"{len(samples)} lines match {args.sources}: too few to fit and check a calibration")
    try:
        calibration, report = calibrate(args.model, samples, args.threads)
    except CalibrationError as exc:
        raise SystemExit(f"cannot calibrate {args.model} on {len(samples)} lines of {args.sources}: {exc}") from exc
    print(summary_table(report))
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / args.model.stem
        Path(f"{stem}-calibration.json").write_text(json.dumps(report, ensure_ascii=False, indent=1) + "\n",
                                                    encoding="utf-8")
        plot_reliability(report, Path(f"{stem}-reliability.png"))
        print(f"wrote {stem}-calibration.json, {stem}-reliability.png")
    if not args.dry_run:
        write_calibration(args.model, calibration)
        print(f"stored {METADATA_KEY} in {args.model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
