"""Pages: our layout + recogniser against Tesseract's page mode, same run, one thread.

    python -m bench.pages ../shared/datasets/openiti-gs --book IbnQutayba \\
        --real-pages ../shared/datasets/openiti-pages --out bench/results

Three kinds of page:
* rendered pages (tests/page_rendering.py: header, heading, margin numbers,
  footnotes, harakat, skew, noise) whose lines are known exactly;
* composed pages: consecutive real lines of a held-out book stacked
  right-aligned with tight, sometimes touching gaps and a slight rotation
  (their transcription is known): page CER against the CER of the same lines
  read as pre-cut lines;
* the shared real pages (no transcription): lines found, seconds, and overlay
  PNGs for a person to check.
Line detection: precision/recall at IoU >= 0.5, merged, split, lost. Page CER:
whole page text, normalised, whitespace collapsed. Writes pages.json and
pages.png (CER against seconds per page) under --out.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_THREAD_LIMIT", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from recognition import Recognizer  # noqa: E402
from recognition.image import load_grey, to_grey  # noqa: E402
from recognition.layout import analyse_layout  # noqa: E402
from recognition.metrics import edit_distance  # noqa: E402
from recognition.page import read_lines, recognize_page  # noqa: E402
from recognition.text import normalize_text  # noqa: E402
from tests.page_matching import match_lines  # noqa: E402
from tests.page_rendering import PageSpec, render_page  # noqa: E402

from .machine import machine  # noqa: E402

cv2.setNumThreads(1)   # one thread each, as Tesseract: OpenCV would otherwise spread the layout over the cores

COLOURS = {"header": (200, 0, 200), "page-number": (200, 0, 200), "main": (220, 40, 0),
           "marginal-note": (0, 150, 0), "marginal-number": (0, 140, 160), "footnote": (0, 120, 255)}


def page_text(text: str) -> str:
    return " ".join(normalize_text(text).split())


def cer(ref: str, hyp: str) -> float:
    return edit_distance(ref, hyp) / max(1, len(ref))


def rendered_pages(count: int) -> list[dict]:
    words = " ".join((Path(__file__).resolve().parent.parent / "datasets/corpus/phrases.txt").read_text(encoding="utf-8").split()).split()
    faces = ["Amiri-Regular", "Scheherazade-Regular", "NotoNaskhArabic-Regular"]
    pages = []
    for i in range(count):
        spec = PageSpec(face=faces[i % 3], harakat=0.4 if i % 2 else 0.0, skew_degrees=(-2.5, 0.0, 1.5, 3.0)[i % 4],
                        noise=0.8 if i % 3 == 1 else 0.0, leading=(1.9, 1.6, 1.5)[i % 3], seed=i)
        page = render_page(spec, words[i * 37:] + words)
        pages.append({"name": f"rendered-{i + 1}", "grey": page.image, "boxes": [t.bbox for t in page.lines],
                      "text": " ".join(t.text for t in page.lines), "line_images": None})
    return pages


def composed_pages(data: Path, book: str, count: int, lines_per_page: int, seed: int = 0) -> list[dict]:
    """Consecutive lines of the held-out book stacked into pages (see module doc)."""
    folder = next(p for p in sorted(data.iterdir()) if book in p.name) / "7_final"
    pngs = sorted(folder.glob("*.png"))
    rng = np.random.default_rng(seed)
    pages = []
    for k in range(count):
        chunk = pngs[k * lines_per_page: (k + 1) * lines_per_page]
        greys = [load_grey(p) for p in chunk]
        texts = [p.with_suffix("").with_suffix(".gt.txt").read_text(encoding="utf-8").strip() if
                 p.with_suffix(".gt.txt").exists() else Path(str(p)[:-4] + ".gt.txt").read_text(encoding="utf-8").strip()
                 for p in chunk]
        width = max(g.shape[1] for g in greys) + 200
        gaps = [int(rng.integers(-4, 8)) for _ in greys]   # negative: the line boxes overlap (touching ink)
        height = sum(g.shape[0] for g in greys) + sum(gaps) + 300
        canvas = np.full((height, width), 255, np.uint8)
        boxes, y = [], 150
        for grey, gap in zip(greys, gaps):
            h, w = grey.shape
            x1 = width - 100
            region = canvas[y:y + h, x1 - w:x1]
            np.minimum(region, grey, out=region)   # ink over ink where lines touch
            boxes.append((x1 - w, y, x1, y + h))
            y += h + gap
        angle = float(rng.uniform(-1.0, 1.0))
        matrix = cv2.getRotationMatrix2D((width / 2, height / 2), angle, 1.0)
        canvas = cv2.warpAffine(canvas, matrix, (width, height), borderValue=255)
        moved = []
        for x0, y0, x1, y1 in boxes:
            pts = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], float) @ matrix[:, :2].T + matrix[:, 2]
            moved.append((int(pts[:, 0].min()), int(pts[:, 1].min()), int(pts[:, 0].max()), int(pts[:, 1].max())))
        pages.append({"name": f"composed-{book}-{k + 1}", "grey": canvas, "boxes": moved,
                      "text": " ".join(texts), "line_images": greys, "line_texts": texts})
    return pages


def measure(pages: list[dict], recognizer: Recognizer, tesseract) -> list[dict]:
    rows = []
    for page in pages:
        grey = page["grey"]
        ref = page_text(page["text"])
        start, cpu = time.perf_counter(), time.process_time()
        result = recognize_page(grey, recognizer)
        ours_s, ours_cpu = time.perf_counter() - start, time.process_time() - cpu
        ours_lines = match_lines(page["boxes"], [line.bbox for line in result.lines])
        row = {"page": page["name"], "truth_lines": len(page["boxes"]),
               "ours": {"seconds": ours_s, "cpu_seconds": ours_cpu, "cer": cer(ref, page_text(result.to_text())),
                        **{k: v for k, v in ours_lines.items() if k != "matches"}}}
        if page.get("line_images"):
            read = read_lines(page["line_images"], recognizer)
            row["ours"]["precut_cer"] = cer(ref, page_text(" ".join(r.text for r in read if r is not None)))
        if tesseract is not None:
            start, cpu = time.perf_counter(), time.process_time()
            text = tesseract.read_page(grey)
            tess_s, tess_cpu = time.perf_counter() - start, time.process_time() - cpu
            tess_lines = match_lines(page["boxes"], tesseract.lines(grey))
            row["tesseract"] = {"seconds": tess_s, "cpu_seconds": tess_cpu, "cer": cer(ref, page_text(text)),
                                **{k: v for k, v in tess_lines.items() if k != "matches"}}
        rows.append(row)
        print(json.dumps({k: (v if not isinstance(v, dict) else {a: round(b, 4) if isinstance(b, float) else b
                                                                  for a, b in v.items()}) for k, v in row.items()}),
              flush=True)
    return rows


def overlay(path: Path, out: Path) -> dict:
    grey = to_grey(Image.open(path))
    start = time.perf_counter()
    layout = analyse_layout(grey)
    seconds = time.perf_counter() - start
    rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    thick = max(2, grey.shape[0] // 700)
    for region in layout.regions:
        colour = COLOURS[str(region.kind)]
        for line in region.lines:
            cv2.polylines(rgb, [np.array(line.polygon)], True, colour, thick)
            cv2.line(rgb, line.baseline[0], line.baseline[1], colour, max(1, thick // 2))
        x0, y0, _, _ = region.bbox
        cv2.putText(rgb, str(region.kind), (x0, max(20, y0 - 8)), cv2.FONT_HERSHEY_SIMPLEX,
                    grey.shape[0] / 2500, colour, thick)
    scale = 1400 / grey.shape[0]
    small = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out / (path.stem + ".png")), small, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return {"page": path.name, "seconds": round(seconds, 3), "skew_degrees": layout.skew_degrees,
            "regions": [[str(r.kind), len(r.lines)] for r in layout.regions]}


def summarise(rows: list[dict], system: str) -> dict:
    have = [r[system] for r in rows if system in r]
    tp = sum(r["true_positives"] for r in have)
    found = sum(r["found"] for r in have)
    truth = sum(r["truth"] for r in have)
    summary = {"pages": len(have), "precision": tp / max(1, found), "recall": tp / max(1, truth),
               "merged": sum(r["merged"] for r in have), "split": sum(r["split"] for r in have),
               "lost": sum(r["lost"] for r in have),
               "median_seconds": statistics.median(r["seconds"] for r in have),
               # CPU time is what a shared, loaded machine does not inflate (both run on one thread)
               "median_cpu_seconds": statistics.median(r["cpu_seconds"] for r in have),
               "cer": statistics.mean(r["cer"] for r in have)}
    precut = [r["precut_cer"] for r in have if "precut_cer" in r]
    if precut:
        summary["precut_cer"] = statistics.mean(precut)
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="line dataset (openiti-gs) for composed pages")
    parser.add_argument("--book", default="IbnQutayba")
    parser.add_argument("--composed", type=int, default=6)
    parser.add_argument("--lines-per-page", type=int, default=20)
    parser.add_argument("--rendered", type=int, default=6)
    parser.add_argument("--real-pages", type=Path)
    parser.add_argument("--overlays", type=int, default=4, help="overlay PNGs to write (one per book)")
    parser.add_argument("--model", type=Path, default=Path("models/arabic-crnn-v2-int8.onnx"))
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    parser.add_argument("--no-tesseract", action="store_true")
    args = parser.parse_args(argv)

    recognizer = Recognizer(args.model, threads=1)
    recognizer.warm_up()
    tesseract = None
    if not args.no_tesseract:
        from .tesseract_layout import TesseractPage
        tesseract = TesseractPage(threads=1)
    report = {"machine": machine(), "model": args.model.name,
              "tesseract": tesseract.version if tesseract else None}
    for kind, pages in (("rendered", rendered_pages(args.rendered)),
                        ("composed", composed_pages(args.data, args.book, args.composed, args.lines_per_page))):
        rows = measure(pages, recognizer, tesseract)
        report[kind] = {"pages": rows, "ours": summarise(rows, "ours")}
        if tesseract:
            report[kind]["tesseract"] = summarise(rows, "tesseract")
    if args.real_pages:
        real = []
        for book in sorted(p for p in args.real_pages.iterdir() if p.is_dir()):
            tifs = sorted(book.glob("*.tif"))
            for i, tif in enumerate(tifs):
                target = args.out / "page-overlays" if i == 2 and args.overlays > 0 else Path("/tmp/bench-pages")
                real.append(overlay(tif, target))
        report["real_pages"] = {"pages": real, "median_seconds": statistics.median(r["seconds"] for r in real)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pages.json").write_text(json.dumps(report, indent=1, ensure_ascii=False), encoding="utf-8")
    print_table(report)
    plot(report, args.out / "pages.png")
    return 0


def print_table(report: dict) -> None:
    print("| pages | system | pages | precision | recall | merged | split | lost | page CER | pre-cut CER | s/page "
          "| CPU s/page |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in ("rendered", "composed"):
        for system in ("ours", "tesseract"):
            s = report[kind].get(system)
            if not s:
                continue
            precut = f"{s['precut_cer']:.2%}" if "precut_cer" in s else ""
            print(f"| {kind} | {system} | {s['pages']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['merged']} | "
                  f"{s['split']} | {s['lost']} | {s['cer']:.2%} | {precut} | {s['median_seconds']:.2f} "
                  f"| {s['median_cpu_seconds']:.2f} |")


def plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, marker in (("rendered", "o"), ("composed", "s")):
        for system, colour in (("ours", "tab:blue"), ("tesseract", "tab:red")):
            s = report[kind].get(system)
            if s:
                ax.scatter(s["median_seconds"], 100 * s["cer"], marker=marker, color=colour, s=60,
                           label=f"{system}, {kind} pages")
    ax.set_xlabel("seconds per page (one thread, median)")
    ax.set_ylabel("page CER (%)")
    ax.set_xscale("log")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
