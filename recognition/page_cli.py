"""``arabic-ocr pages``: page images, multi-page TIFFs and PDFs -> one output file per page and format.

    arabic-ocr pages scans/ book.pdf --format alto,txt --out results/ --jobs 2

Every input page becomes ``OUT/NAME.SUFFIX`` (``NAME-0001.SUFFIX``, ... for a
file of several pages), written atomically, so an interrupted run leaves no
half-written file. Pages are read by ``recognition.page.recognize_page``; with
``--jobs N`` by N worker processes, each with its own ``Recognizer``. One
unreadable page fails only itself: the others are written, the failures are
listed with their reasons on stderr, and the exit status is 1.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from . import cli_decoding
from .char_lm import CharacterLanguageModel, LanguageModelError
from .image import IMAGE_SUFFIXES, ImageError
from .page_formats import FORMAT_SUFFIXES

PAGE_SUFFIXES = (*IMAGE_SUFFIXES, ".pdf")


class PagesUsageError(Exception):
    pass


@dataclass(frozen=True)
class PageTask:
    """One page to read: page ``number`` (1-based) of ``path``, written as ``stem`` + a format's suffix."""

    path: str
    number: int
    stem: str


@dataclass(frozen=True)
class PageFailure:
    path: str
    number: int | None     # None: the file itself could not be opened
    code: str
    message: str

    def describe(self) -> str:
        where = self.path if self.number is None else f"{self.path} page {self.number}"
        return f"{where}: {self.code}: {self.message}"


@dataclass(frozen=True)
class PageDone:
    task: PageTask
    lines: int


def parse_formats(value: str) -> list[str]:
    wanted = [f.strip().lower() for f in value.split(",") if f.strip()]
    unknown = sorted(set(wanted) - set(FORMAT_SUFFIXES))
    if not wanted or unknown:
        raise PagesUsageError(f"unknown format {', '.join(unknown) or repr(value)}; choose from "
                              f"{', '.join(FORMAT_SUFFIXES)} (comma-separated for several)")
    return [f for f in FORMAT_SUFFIXES if f in wanted]


def expand_page_files(paths: list[str]) -> list[Path]:
    """Files as given; folders searched recursively for page images, TIFFs and PDFs, in a stable order."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in PAGE_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise PagesUsageError(f"no such file or folder: {p}")
    return files


def plan(files: list[Path]) -> tuple[list[PageTask], list[PageFailure]]:
    """The pages of every file (counted without decoding a pixel), and the files that cannot be opened at all.

    Two inputs that would write the same output name are a usage error: one would overwrite the other.
    """
    from .page_loader import count_pages

    stems: dict[str, Path] = {}
    for path in files:
        other = stems.setdefault(path.stem.lower(), path)
        if other != path:
            raise PagesUsageError(f"{other} and {path} would both be written as {path.stem}.*; "
                                  "run them into different --out folders")
    tasks, failures = [], []
    for path in files:
        try:
            count = count_pages(path)
        except ImageError as exc:
            failures.append(PageFailure(str(path), None, exc.code, exc.message))
            continue
        if count == 0:
            failures.append(PageFailure(str(path), None, "no_pages", "the file has no pages"))
        elif count == 1:
            tasks.append(PageTask(str(path), 1, path.stem))
        else:
            tasks.extend(PageTask(str(path), n, f"{path.stem}-{n:04d}") for n in range(1, count + 1))
    return tasks, failures


# One recogniser per process: the worker processes of --jobs, or this process for --jobs 1.
_recognizer = None


def _open_recognizer(model: str, threads: int | None, decoding: dict | None = None) -> None:
    global _recognizer
    from .recognizer import Recognizer

    _recognizer = Recognizer(model, threads=threads, **(decoding or {}))


def write_atomically(target: Path, text: str) -> None:
    """Write next to ``target`` and rename: a reader or an interrupted run never sees half a file."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, target)
    except BaseException:
        os.unlink(temporary)
        raise


def read_page_task(task: PageTask, formats: list[str], out_dir: str) -> PageDone | PageFailure:
    """Load, recognise and write one page; any failure is that page's alone."""
    from .page import recognize_page
    from .page_select import load_page

    try:
        loaded = load_page(task.path, task.number)   # by path: the PDF renderer's child opens the file itself
    except ImageError as exc:
        return PageFailure(task.path, task.number, exc.code, exc.message)
    except OSError as exc:
        return PageFailure(task.path, task.number, "unreadable_file", str(exc))
    try:
        result = recognize_page(loaded.grey, _recognizer, image_name=Path(task.path).name)
        writers: dict[str, Callable[[], str]] = {
            "txt": result.to_text, "json": result.to_json, "alto": result.to_alto, "page": result.to_page_xml,
            "hocr": result.to_hocr}
        for fmt in formats:
            write_atomically(Path(out_dir) / f"{task.stem}{FORMAT_SUFFIXES[fmt]}", writers[fmt]())
    except Exception as exc:  # a page that breaks the layout or a full disk: report it, read the other pages
        return PageFailure(task.path, task.number, type(exc).__name__, str(exc))
    return PageDone(task, len(result.lines))


def run_tasks(tasks: list[PageTask], formats: list[str], out_dir: Path, model: Path, jobs: int,
              threads: int | None, decoding: dict | None = None) -> Iterator[PageDone | PageFailure]:
    """Each page's outcome as it finishes (in input order with one job, in finishing order with several)."""
    read = functools.partial(read_page_task, formats=formats, out_dir=str(out_dir))
    if jobs == 1:
        _open_recognizer(str(model), threads, decoding)
        yield from map(read, tasks)
        return
    import multiprocessing

    # spawn: each worker starts clean and opens its own onnxruntime session (no session or thread pool
    # inherited from a fork)
    with ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_open_recognizer, initargs=(str(model), threads, decoding)) as pool:
        futures = [pool.submit(read, task) for task in tasks]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def add_parser(commands) -> None:
    pages = commands.add_parser(
        "pages", help="recognise book pages: images, multi-page TIFFs, PDFs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Recognise whole pages: find the text regions and lines (running header, main text, marginal "
                    "notes, footnotes) in right-to-left reading order, read every line, and write one file per page "
                    "and format to the --out folder: OUT/NAME.SUFFIX for a one-page file, OUT/NAME-0001.SUFFIX, "
                    "OUT/NAME-0002.SUFFIX, ... for a multi-page TIFF or PDF (PDF pages are rendered at 300 dpi).",
        epilog="formats and the files they write:\n"
               "  txt   NAME.txt       the text in reading order, a blank line between regions\n"
               "  json  NAME.json      regions -> lines: polygon, baseline, text, confidence, characters\n"
               "  alto  NAME.alto.xml  ALTO 4.4 (TextLine/String with WC and CC)\n"
               "  page  NAME.page.xml  PAGE-XML 2019 (TextRegion/TextLine/Coords/Baseline/TextEquiv)\n"
               "  hocr  NAME.hocr      hOCR 1.2 (ocr_line with x_wconf)\n\n"
               "A progress bar is shown on a terminal. A page that cannot be read is listed on stderr with its "
               "reason;\nthe other pages are still written. Exits with 1 if any page failed, 2 on bad usage.\n\n"
               "example: arabic-ocr pages scans/ book.pdf --format alto,txt --out results/ --jobs 2")
    pages.add_argument("paths", nargs="+", metavar="PATH",
                       help=f"page files or folders (searched recursively for {', '.join(PAGE_SUFFIXES)})")
    pages.add_argument("--format", default="txt", metavar="FORMAT",
                       help=f"{'|'.join(FORMAT_SUFFIXES)}, or several comma-separated (default: txt)")
    pages.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the outputs (created)")
    pages.add_argument("--jobs", type=int, default=1, metavar="N",
                       help="worker processes, each with its own model session (default 1)")
    pages.add_argument("--model", type=Path, default=None, help="an .onnx line model (as for `lines`)")
    pages.add_argument("--threads", type=int, default=0, metavar="N",
                       help="onnxruntime threads per process (default: 1 with --jobs above 1, else onnxruntime's "
                            "own default)")
    cli_decoding.add_arguments(pages)


def checked_decoding(model: Path, decoding: dict | None) -> dict | None:
    """``decoding`` with its language model loaded (once: the workers get it loaded) and checked against the
    recognition model: its file, and the text convention the recognition model writes. Raises
    ``LanguageModelError``."""
    if not decoding or decoding.get("language_model") is None:
        return decoding
    from .beam_search import CTCBeamSearch
    from .recognizer import read_model_info

    language_model = decoding["language_model"]
    if not isinstance(language_model, CharacterLanguageModel):
        language_model = CharacterLanguageModel.load(language_model)
    info = read_model_info(model)
    CTCBeamSearch(info.alphabet, language_model, decoding.get("beam_search") or cli_decoding.DEFAULTS,
                  text_normalisation=info.text_normalisation)
    return {**decoding, "language_model": language_model}


def main(args, model: Path, decoding: dict | None = None) -> int:
    """Run ``arabic-ocr pages`` with parsed ``args``, a checked ``model`` and ``Recognizer`` decoding options
    (``recognition.cli_decoding``); returns the exit status."""
    from tqdm import tqdm

    try:
        decoding = checked_decoding(model, decoding)  # a bad or unsuitable LM file is bad usage, before any page
    except LanguageModelError as exc:
        print(f"arabic-ocr: {exc}", file=sys.stderr)
        return 2
    try:
        formats = parse_formats(args.format)
        if args.jobs < 1 or args.threads < 0:
            raise PagesUsageError("--jobs must be at least 1 and --threads at least 0")
        tasks, failures = plan(expand_page_files(args.paths))   # before loading a model or creating the folder
    except PagesUsageError as exc:
        print(f"arabic-ocr: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    threads = args.threads or (1 if args.jobs > 1 else None)
    lines = 0
    # tqdm draws only when stderr is a terminal (disable=None); piped or logged runs get the summary alone.
    with tqdm(total=len(tasks), unit="page", file=sys.stderr, disable=None, dynamic_ncols=True) as bar:
        for outcome in run_tasks(tasks, formats, args.out, model, args.jobs, threads, decoding) if tasks else ():
            if isinstance(outcome, PageFailure):
                failures.append(outcome)
                if not bar.disable:   # seen at once on a terminal; listed again in the summary
                    bar.write(f"arabic-ocr: failed: {outcome.describe()}", file=sys.stderr)
            else:
                lines += outcome.lines
            bar.update(1)
    failed_pages = len(failures)
    done = len(tasks) - sum(f.number is not None for f in failures)
    print(f"arabic-ocr: {done} page(s) written to {args.out} ({lines} lines, {', '.join(formats)})"
          + (f"; {failed_pages} failed:" if failures else ""), file=sys.stderr)
    for failure in sorted(failures, key=lambda f: (f.path, f.number or 0)):
        print(f"  {failure.describe()}", file=sys.stderr)
    return 1 if failures else 0
