"""Speed and accuracy of the ONNX recogniser against Tesseract, in one run.

    python -m bench.recognizer ../shared/datasets/openiti-gs --sources IbnQutayba --max-lines 200

Times our recogniser per line (preprocessing + model + CTC decoding; the
images are decoded before timing) at batch sizes 1, 8 and 32 with 1 and 2 onnxruntime threads, and
Tesseract 5 ``ara`` (psm 13, one thread, C API) on the same lines in the same
process, in wall-clock and in CPU milliseconds (this process's CPU time, all
its threads: on a machine shared with other work the CPU figures move less). Both are scored by the project's evaluator. Prints a table, writes
``bench/results/recognizer.json`` and a plot of CER against ms per line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bench.lines import select_lines
from bench.machine import RESULTS, machine
from recognition.image import load_grey
from recognition.recognizer import Recognizer
from training.evaluate import score

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
DEFAULT_MODELS = (MODELS_DIR / "arabic-crnn-v2.onnx", MODELS_DIR / "arabic-crnn-v2-int8.onnx")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def time_ours(model: Path, greys: list[np.ndarray], batch: int,
              threads: int) -> tuple[list[str], list[float], list[float]]:
    """Texts, and wall-clock and CPU milliseconds a line (CPU: this process's, all its threads)."""
    recognizer = Recognizer(model, threads=threads, max_batch=batch)
    recognizer.warm_up()
    texts, per_line_ms, per_line_cpu_ms = [], [], []
    for start in range(0, len(greys), batch):
        chunk = greys[start: start + batch]
        began, began_cpu = time.perf_counter(), time.process_time()
        outcomes = recognizer.recognize(chunk)
        per_line_cpu_ms.extend([(time.process_time() - began_cpu) * 1000 / len(chunk)] * len(chunk))
        per_line_ms.extend([(time.perf_counter() - began) * 1000 / len(chunk)] * len(chunk))
        texts.extend(getattr(outcome, "text", "") for outcome in outcomes)  # an unreadable line reads as nothing
    return texts, per_line_ms, per_line_cpu_ms


def time_tesseract(greys: list[np.ndarray]) -> tuple[list[str], list[float], list[float], str]:
    from bench.tesseract import Tesseract

    engine = Tesseract("ara", psm=13, threads=1)
    engine.read(greys[0])  # warm-up
    texts, per_line_ms, per_line_cpu_ms = [], [], []
    for grey in greys:
        began, began_cpu = time.perf_counter(), time.process_time()
        texts.append(engine.read(grey))
        per_line_cpu_ms.append((time.process_time() - began_cpu) * 1000)
        per_line_ms.append((time.perf_counter() - began) * 1000)
    return texts, per_line_ms, per_line_cpu_ms, engine.version


def plot(rows: list[dict], path: Path) -> None:
    """CER against ms per line, one colour per system, points labelled b<batch>/t<threads>."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8))
    systems = list(dict.fromkeys(r["system"] for r in rows))
    for system in systems:
        mine = [r for r in rows if r["system"] == system]
        marker = "s" if system.startswith("tesseract") else ("^" if "int8" in system else "o")
        ax.scatter([r["median_ms"] for r in mine], [100 * r["cer"] for r in mine], marker=marker, s=55,
                   label=system)
        for r in mine:
            if not system.startswith("tesseract"):
                ax.annotate(f"b{r['batch']}/t{r['threads']}", (r["median_ms"], 100 * r["cer"]),
                            textcoords="offset points", xytext=(0, 7 if r["threads"] == 1 else -12),
                            fontsize=7, ha="center")
    ax.set_xscale("log")
    ax.set_ylim(0, max(100 * r["cer"] for r in rows) * 1.15)
    ax.set_xlabel("median ms per line (log scale; b = batch, t = threads)")
    ax.set_ylabel("CER %")
    ax.set_title("Accuracy vs speed on the same lines, same run")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lines_of_width(samples: list, greys: list, low: int, high: int, at_most_per_source: int) -> tuple[list, list]:
    """The lines whose image is ``low`` to ``high`` px wide, at most ``at_most_per_source`` of each source (file order)."""
    taken, kept = Counter(), []
    for sample, grey in zip(samples, greys):
        if low <= grey.shape[1] <= high and taken[sample.source] < at_most_per_source:
            taken[sample.source] += 1
            kept.append((sample, grey))
    return [s for s, _ in kept], [g for _, g in kept]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.recognizer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="line folders (NAME.png + NAME.gt.txt) or manifests")
    parser.add_argument("--models", nargs="+", default=[str(p) for p in DEFAULT_MODELS if p.exists()],
                        help="ONNX models to compare (default: the shipped float and int8 models)")
    parser.add_argument("--sources", nargs="*", help="only these sources (e.g. a held-out book)")
    parser.add_argument("--max-lines", type=int, default=200, help="lines per source (default %(default)s)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--opencv-threads", type=int, help="OpenCV's threads for preprocessing (default: OpenCV's own, "
                                                             "one per core; 1 makes a one-thread row one thread throughout)")
    parser.add_argument("--widths", type=int, nargs=2, metavar=("MIN", "MAX"),
                        help="only lines whose image is MIN to MAX px wide, chosen before --max-lines (e.g. 900 1100 "
                             "for 'a typical line, about 1,000 px at 300 dpi')")
    parser.add_argument("--no-tesseract", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "recognizer.json"))
    args = parser.parse_args(argv)

    if args.opencv_threads:
        import cv2

        cv2.setNumThreads(args.opencv_threads)
    samples = select_lines(args.data, args.sources, at_most_per_source=None if args.widths else args.max_lines)
    greys = [load_grey(s.image_path) for s in samples]
    if args.widths:
        samples, greys = lines_of_width(samples, greys, *args.widths, at_most_per_source=args.max_lines)
    per_source = dict(Counter(s.source for s in samples))
    if not samples:
        parser.error("no lines found" + (f" {args.widths[0]}-{args.widths[1]} px wide" if args.widths else ""))
    widths = [g.shape[1] for g in greys]
    print(f"{len(samples)} lines from {len(per_source)} sources, median {int(np.median(widths))} px wide; "
          f"{machine()['cpu']}, {os.cpu_count()} cores", file=sys.stderr)

    rows = []
    runs = [(model, threads, batch) for model in args.models for threads in args.threads for batch in args.batches]
    for model, threads, batch in runs:
        name = Path(model).stem
        texts, ms, cpu_ms = time_ours(Path(model), greys, batch, threads)
        table, _ = score(samples, texts)
        rows.append({"system": name, "label": f"{name} b{batch} t{threads}", "batch": batch, "threads": threads,
                     "median_ms": statistics.median(ms), "p90_ms": percentile(ms, 90),
                     "median_cpu_ms": statistics.median(cpu_ms),
                     "cer": table["all"]["cer"], "wer": table["all"]["wer"],
                     "cer_no_harakat_tatweel": table["all"]["cer_no_harakat_tatweel"]})
    tesseract_row = None
    if not args.no_tesseract:
        try:
            texts, ms, cpu_ms, version = time_tesseract(greys)
            table, _ = score(samples, texts)
            tesseract_row = {"system": f"tesseract {version} ara", "label": "tesseract ara psm13 t1", "batch": 1,
                             "threads": 1, "median_ms": statistics.median(ms), "p90_ms": percentile(ms, 90),
                             "median_cpu_ms": statistics.median(cpu_ms),
                             "cer": table["all"]["cer"], "wer": table["all"]["wer"],
                             "cer_no_harakat_tatweel": table["all"]["cer_no_harakat_tatweel"]}
            rows.append(tesseract_row)
        except Exception as exc:  # no Tesseract here: report ours alone, say why
            print(f"Tesseract skipped: {exc}", file=sys.stderr)

    print(f"\n{'system':<34} {'batch':>5} {'thr':>3} {'median ms':>10} {'p90 ms':>8} {'CPU ms':>7} {'CER %':>7}"
          f" {'WER %':>7} {'x faster than tess':>18} {'(CPU)':>6}")
    for row in rows:
        ratio = tesseract_row["median_ms"] / row["median_ms"] if tesseract_row else float("nan")
        cpu_ratio = tesseract_row["median_cpu_ms"] / row["median_cpu_ms"] if tesseract_row else float("nan")
        row["speedup_vs_tesseract"] = round(ratio, 2) if tesseract_row else None
        row["cpu_speedup_vs_tesseract"] = round(cpu_ratio, 2) if tesseract_row else None
        print(f"{row['label']:<34} {row['batch']:>5} {row['threads']:>3} {row['median_ms']:>10.2f} "
              f"{row['p90_ms']:>8.2f} {row['median_cpu_ms']:>7.2f} {100 * row['cer']:>7.2f} {100 * row['wer']:>7.2f} "
              f"{ratio:>18.1f} {cpu_ratio:>6.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"models": args.models, "lines": len(samples), "sources": per_source,
              "median_width_px": int(np.median(widths)), "widths": args.widths, "machine": machine(),
              "opencv_threads": args.opencv_threads,
              "load_average": os.getloadavg(),
              "when": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}
    out.write_text(json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    plot(rows, out.with_suffix(".png"))
    print(f"\nwrote {out} and {out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
