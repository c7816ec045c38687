"""Loading every page of a book as a job does: by the file's bytes (jobs before issue 12's follow-up) and by its path.

    python -m bench.book_loading                       # a 150-page PDF and TIFF of rendered pages
    python -m bench.book_loading --pages 200 --formats pdf

The book: ``--distinct`` pages rendered by ``tests/page_rendering.py`` (1700x2400 px, speckle
noise, so each compresses like a scan) repeated to ``--pages`` pages, saved by Pillow as a
PDF (each page its own JPEG at 300 dpi, quality ``--quality``) and as a multi-page TIFF (LZW). For each way of
loading, a fresh Python process loads pages 1, 2, ..., N one at a time, as
``ocr_app.jobs.services.process_page`` does (one page a task):

- ``bytes``: open the stored file, read it whole, ``load_page(data, n)``: what jobs did; for a
  PDF the bytes are also pickled into the renderer's child process, a page;
- ``path``: ``load_page(path, n)``: the renderer's child opens the PDF itself, a TIFF is read
  from disk up to its frame.

Reported for that process (the job worker), not the renderer's children: wall seconds for
all pages, its CPU seconds, and its peak RSS (VmHWM) above what it held after loading page 1
once (imports done, forkserver started, one page's pixels held). Prints a table and writes
``bench/results/book_loading.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.machine import RESULTS, machine

ROOT = Path(__file__).resolve().parent.parent


def write_book(folder: Path, pages: int, distinct: int, quality: int) -> dict[str, Path]:
    from PIL import Image

    from tests.conftest import CORPUS_LINES
    from tests.page_rendering import PageSpec, render_page

    words = " ".join(CORPUS_LINES).split()
    rendered = [Image.fromarray(render_page(PageSpec(seed=n, noise=0.02), words[n * 53:] + words).image)
                for n in range(distinct)]
    books = {"pdf": folder / "book.pdf", "tiff": folder / "book.tif"}
    # one Image object a page: Pillow keeps each page's save options on the object, so a page repeated by reference
    # would be saved with the options of another file
    frames = [rendered[n % distinct].copy() for n in range(pages)]
    frames[0].save(books["pdf"], format="PDF", save_all=True, append_images=frames[1:], resolution=300,
                   quality=quality)
    frames = [rendered[n % distinct].copy() for n in range(pages)]
    frames[0].save(books["tiff"], format="TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw",
                   dpi=(300, 300))
    return books


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_every_page(path: str, given: str, pages: int) -> dict:
    """In this process: every page in turn, the way ``given`` (bytes or path); seconds and memory."""
    from recognition.page_select import load_page

    def load(number: int):
        if given == "bytes":
            with open(path, "rb") as stored:
                return load_page(stored.read(), number)
        return load_page(path, number)

    load(1)   # imports, the renderer's forkserver: once a worker's life, not a page's
    held_mb = _status_mb("VmRSS")
    started, cpu_started = time.perf_counter(), time.process_time()
    shapes = {load(number).grey.shape for number in range(1, pages + 1)}
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    return {"seconds": round(seconds, 2), "ms_per_page": round(1000 * seconds / pages, 1),
            "cpu_seconds": round(cpu, 2), "peak_rss_mb": round(_status_mb("VmHWM"), 1),
            "peak_above_held_mb": round(_status_mb("VmHWM") - held_mb, 1), "page_shapes": sorted(shapes)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=150)
    parser.add_argument("--distinct", type=int, default=8, help="pages rendered, then repeated (default 8)")
    parser.add_argument("--quality", type=int, default=95, help="the PDF's JPEG quality (default 95: scan-sized)")
    parser.add_argument("--formats", nargs="+", default=["pdf", "tiff"], choices=["pdf", "tiff"])
    parser.add_argument("--json", type=Path, default=RESULTS / "book_loading.json")
    parser.add_argument("--one", nargs=3, metavar=("PATH", "GIVEN", "PAGES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:   # a measuring process of its own, started below
        path, given, pages = args.one
        print(json.dumps(load_every_page(path, given, int(pages))))
        return 0

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    results = {"machine": machine(), "pages": args.pages, "distinct": args.distinct, "jpeg_quality": args.quality,
               "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               "load_average_before": os.getloadavg(), "rows": []}
    with tempfile.TemporaryDirectory(prefix="bench-book-") as folder:
        books = write_book(Path(folder), args.pages, args.distinct, args.quality)
        print(f"{'file':<6} {'MB':>6} {'given':<6} {'seconds':>8} {'ms/page':>8} {'CPU s':>7} {'peak MB':>8} "
              f"{'peak above':>10}")
        for fmt in args.formats:
            size_mb = books[fmt].stat().st_size / 2**20
            for given in ("bytes", "path"):
                done = subprocess.run([sys.executable, "-m", "bench.book_loading", "--one", str(books[fmt]), given,
                                       str(args.pages)], capture_output=True, text=True, cwd=ROOT, env=env)
                if done.returncode:
                    raise SystemExit(done.stderr)
                row = {"format": fmt, "file_mb": round(size_mb, 1), "given": given, **json.loads(done.stdout)}
                results["rows"].append(row)
                print(f"{fmt:<6} {size_mb:6.1f} {given:<6} {row['seconds']:8.2f} {row['ms_per_page']:8.1f} "
                      f"{row['cpu_seconds']:7.2f} {row['peak_rss_mb']:8.1f} {row['peak_above_held_mb']:10.1f}")
    results["load_average_after"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1))
    print(f"load average before {results['load_average_before']}, after {results['load_average_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
