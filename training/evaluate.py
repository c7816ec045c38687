"""Measure a model on real lines: CER and WER per source, confusions, worst lines.

    python -m training.evaluate models/arabic-crnn-v1.onnx ../shared/datasets/openiti-gs \\
        --out runs/eval-v1

Reads line folders or manifests (as ``training.preprocess`` does), recognises
through the same ``Recognizer`` the service uses, and writes
``evaluation.json``, ``evaluation.md``, ``worst-lines.png`` and
``reliability.png`` to ``--out``. CER is reported raw, with harakat and
tatweel removed from both sides, and with the spaces next to punctuation
removed from both sides (editions and transcriptions differ in spacing marks:
« word » or «word», word . or word.); the confidences as served are measured per
source (``training.calibrate.confidence_measures``: calibration error per
character and per line, share of the errors in the lowest-confidence 10%).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from recognition.ctc import LineResult
from recognition.line_data import LineSample, SkipReport, iter_samples
from recognition.metrics import ErrorCounter
from recognition.text import normalize_text, strip_harakat, strip_tatweel


@dataclass
class Scored:
    sample: LineSample
    reference: str
    hypothesis: str
    errors: int


def loose(text: str) -> str:
    return strip_tatweel(strip_harakat(text))


_SPACED_MARK = re.compile(r"\s*([«»()\[\]\u060c.:\u061b\u061f!])\s*")


def tight_punctuation(text: str) -> str:
    """The text with no space next to a punctuation mark: what is left when spacing conventions are set aside."""
    return _SPACED_MARK.sub(r"\1", text)


def score(samples: Sequence[LineSample], hypotheses: Sequence[str]) -> tuple[dict, list[Scored]]:
    """Per-source and overall error rates of ``hypotheses`` against the samples."""
    raw: dict[str, ErrorCounter] = defaultdict(ErrorCounter)
    relaxed: dict[str, ErrorCounter] = defaultdict(ErrorCounter)
    tight: dict[str, ErrorCounter] = defaultdict(ErrorCounter)
    scored = []
    for sample, hyp in zip(samples, hypotheses, strict=True):
        ref = normalize_text(sample.text)
        hyp = normalize_text(hyp)
        errors = 0
        for key in (sample.source, "all"):
            errors = raw[key].add(ref, hyp, track_confusions=True)
            relaxed[key].add(loose(ref), loose(hyp))
            tight[key].add(tight_punctuation(ref), tight_punctuation(hyp))
        scored.append(Scored(sample, ref, hyp, errors))
    table = {
        source: {
            "lines": raw[source].lines,
            "chars": raw[source].chars,
            "cer": round(raw[source].cer, 5),
            "wer": round(raw[source].wer, 5),
            "cer_no_harakat_tatweel": round(relaxed[source].cer, 5),
            "wer_no_harakat_tatweel": round(relaxed[source].wer, 5),
            "cer_no_punctuation_spacing": round(tight[source].cer, 5),
        }
        for source in sorted(raw, key=lambda s: (s == "all", s))
    }
    table["all"]["confusions"] = [
        {"reference": r, "hypothesis": h, "count": n} for (r, h), n in raw["all"].confusions.most_common(25)
    ]
    return table, scored


def recognise_all(model_path: str, samples: Sequence[LineSample], threads: int = 0,
                  progress: bool = True) -> tuple[list[LineResult | None], float]:
    """One result per sample (None for an unreadable image), and the seconds it took."""
    from tqdm import tqdm

    from recognition.recognizer import Recognizer

    recognizer = Recognizer(model_path, threads=threads or None)
    readings: list[LineResult | None] = []
    start = time.perf_counter()
    chunk = 32
    for i in tqdm(range(0, len(samples), chunk), unit="batch", file=sys.stderr, disable=not progress or None):
        outcomes = recognizer.recognize([sample.image_path for sample in samples[i: i + chunk]])
        readings.extend(o if isinstance(o, LineResult) else None for o in outcomes)
    return readings, time.perf_counter() - start


def to_markdown(title: str, table: dict) -> str:
    rows = [f"## {title}", "", "| source | lines | CER | WER | CER (no harakat/tatweel) | CER (no spaces at marks) |",
            "|---|---:|---:|---:|---:|---:|"]
    for source, r in table.items():
        rows.append(f"| {source} | {r['lines']} | {100 * r['cer']:.2f}% | {100 * r['wer']:.2f}% | "
                    f"{100 * r['cer_no_harakat_tatweel']:.2f}% | {100 * r['cer_no_punctuation_spacing']:.2f}% |")
    confusions = table["all"].get("confusions", [])
    if confusions:
        rows += ["", "Most frequent confusions (reference -> recognised; empty = missing/extra):", ""]
        rows.append(", ".join(f"`{c['reference'] or '∅'}`->`{c['hypothesis'] or '∅'}` x{c['count']}"
                              for c in confusions[:15]))
    return "\n".join(rows) + "\n"


def measure_confidences(samples: Sequence[LineSample], readings: Sequence[LineResult | None]) -> dict:
    """Per source and overall: do the served confidences point at the errors, and match observed rates?"""
    from .calibrate import confidence_measures, outcome

    by_source: dict[str, list[tuple[LineResult, object]]] = defaultdict(list)
    for sample, reading in zip(samples, readings, strict=True):
        if reading is not None:
            pair = (reading, outcome(sample.text, reading))
            by_source[sample.source].append(pair)
            by_source["all"].append(pair)
    return {source: confidence_measures([r for r, _ in pairs], [o for _, o in pairs])
            for source, pairs in sorted(by_source.items(), key=lambda kv: (kv[0] == "all", kv[0]))}


def confidence_markdown(confidence: dict) -> str:
    rows = ["Confidences as served: calibration error (ECE) per recognised character (is it right?) and per "
            "line (is it exactly right?), and the share of all character errors in the lowest-confidence 10% "
            "of lines (random order: 10%; best possible: a perfect ranking).", "",
            "| source | character ECE | line ECE | errors in lowest 10% | best possible |", "|---|---:|---:|---:|---:|"]
    for source, m in confidence.items():
        rows.append(f"| {source} | {100 * m['character_ece']:.2f}% | {100 * m['line_ece']:.2f}% | "
                    f"{100 * m['error_share_lowest_10pct']:.1f}% | {100 * m['error_share_best_possible']:.1f}% |")
    return "\n".join(rows) + "\n"


def plot_reliability(confidence: dict, path: Path, title: str) -> None:
    """Reliability diagrams (characters, lines), one curve per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4.6))
    for ax, kind, observed in ((axes[0], "character", "share of characters right"),
                               (axes[1], "line", "share of lines exactly right")):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for source, m in confidence.items():
            rows = m[f"{kind}_reliability"]
            ax.plot([r["confidence"] for r in rows], [r["observed"] for r in rows], "o-", ms=3,
                    label=f"{source.split('/')[-2] if source.count('/') >= 2 else source} "
                          f"(ECE {100 * m[f'{kind}_ece']:.1f}%)")
        ax.set(xlim=(0, 1), ylim=(0, 1), xlabel=f"{kind} confidence (bin mean)", ylabel=observed, title=f"{kind}s")
        ax.legend(fontsize=7, loc="upper left")
    figure.suptitle(f"{title}: reliability per source", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def draw_worst_lines(scored: list[Scored], path: Path, count: int = 8) -> None:
    """The lines with the most errors, each above its reference and recognition."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from recognition.image import load_grey

    from .fonts import find_book_fonts

    worst = sorted(scored, key=lambda s: s.errors / max(len(s.reference), 1), reverse=True)[:count]
    faces = find_book_fonts(("Amiri-Regular", "Scheherazade-Regular"))  # both cover Latin brackets
    font = ImageFont.truetype(faces[0].path, 22, layout_engine=ImageFont.Layout.RAQM) if faces else None
    width = 1200
    blocks = []
    for s in worst:
        grey = load_grey(s.sample.image_path)
        scale = min(1.0, width / grey.shape[1])
        line = Image.fromarray(grey).resize((max(1, int(grey.shape[1] * scale)), max(1, int(grey.shape[0] * scale))))
        block = Image.new("L", (width, line.height + 80), 255)
        block.paste(line, (width - line.width, 0))
        draw = ImageDraw.Draw(block)
        for row, (label, text) in enumerate((("ref", s.reference), ("ocr", s.hypothesis))):
            y = line.height + 6 + row * 36
            draw.text((4, y), f"{label} ({s.errors} errors)" if row else label, fill=128)
            if font is not None:
                draw.text((width - 8, y), text, font=font, fill=0, anchor="ra", direction="rtl", language="ar")
        blocks.append(np.asarray(block))
    if blocks:
        sheet = np.vstack([np.vstack([b, np.full((4, width), 180, np.uint8)]) for b in blocks])
        Image.fromarray(sheet).save(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an .onnx model")
    parser.add_argument("data", nargs="+", help="line folders (NAME.png + NAME.gt.txt) or TSV/CSV manifests")
    parser.add_argument("--out", help="folder for evaluation.json / .md / worst-lines.png")
    parser.add_argument("--sources", nargs="*", help="only these sources (names or name parts)")
    parser.add_argument("--max-lines", type=int, help="evaluate at most this many lines per source")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)

    from recognition.line_data import matches_source

    report = SkipReport()
    per_source: Counter = Counter()
    samples = []
    for s in iter_samples(args.data, report):
        if args.sources and not matches_source(s.source, args.sources):
            continue
        if args.max_lines and per_source[s.source] >= args.max_lines:
            continue
        per_source[s.source] += 1
        samples.append(s)
    readings, seconds = recognise_all(args.model, samples, args.threads)
    table, scored = score(samples, [r.text if r else "" for r in readings])
    confidence = measure_confidences(samples, readings)
    result = {"model": args.model, "data": args.data, "lines": len(samples), "seconds": round(seconds, 2),
              "ms_per_line": round(1000 * seconds / max(len(samples), 1), 2), "results": table,
              "confidence": confidence, "skipped": report.as_dict()}
    markdown = (to_markdown(f"{Path(args.model).name} on {len(samples)} lines", table) + "\n"
                + confidence_markdown(confidence))
    print(markdown)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "evaluation.json").write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
        (out / "evaluation.md").write_text(markdown, encoding="utf-8")
        draw_worst_lines(scored, out / "worst-lines.png")
        plot_reliability(confidence, out / "reliability.png", Path(args.model).name)
        print(f"wrote {out}/evaluation.json, evaluation.md, worst-lines.png, reliability.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
