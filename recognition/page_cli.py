"""``arabic-ocr pages``: page images, multi-page TIFFs and PDFs -> one output file per page and format.

    arabic-ocr pages scans/ book.pdf --format alto,txt --out results/ --jobs 2

Every input page becomes ``OUT/NAME.SUFFIX`` (``NAME-0001.SUFFIX``, ... for a
file of several pages; two pages that would be written under one name are
refused before any page is read). A page's files are written together: each to
a temporary file, then all renamed into place, so an interrupted run or a
failed page leaves no half-written file and no page with only some of its
formats. Pages are read by ``recognition.page.recognize_page``; with
``--jobs N`` by N worker processes, each with its own ``Recognizer``. One
unreadable page fails only itself: the others are written, the failures are
listed with their reasons on stderr, and the exit status is 1. Ctrl-C stops
the run: the pages being read by workers finish (with one job, the page being
read is dropped), one line says how many were written, and the exit status is
130; a further Ctrl-C while it finishes is ignored (``recognition.cli.console_main``).
"""

from __future__ import annotations

import argparse
import functools
import os
import secrets
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from . import cli_decoding
from .char_lm import LanguageModelError
from .file_names import unicode_name
from .image import IMAGE_SUFFIXES, ImageError
from .page_formats import FORMAT_SUFFIXES

PAGE_SUFFIXES = (*IMAGE_SUFFIXES, ".pdf")


class PagesUsageError(Exception):
    pass


class ModelFileError(Exception):
    """The --model file is not an ONNX line model this program can read (bad usage, like a missing file)."""


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

    Two pages that would write the same output name are a usage error (``check_output_names``).
    """
    from .page_loader import count_pages

    tasks, failures = [], []
    for path in files:
        try:
            count = count_pages(path)
        except ImageError as exc:
            failures.append(PageFailure(str(path), None, exc.code, exc.message))
            continue
        except OSError as exc:   # gone or unreadable since it was listed
            failures.append(PageFailure(str(path), None, "unreadable_file", exc.strerror or str(exc)))
            continue
        if count == 0:
            failures.append(PageFailure(str(path), None, "no_pages", "the file has no pages"))
        elif count == 1:
            tasks.append(PageTask(str(path), 1, path.stem))
        else:
            tasks.extend(PageTask(str(path), n, f"{path.stem}-{n:04d}") for n in range(1, count + 1))
    check_output_names(tasks)
    return tasks, failures


def check_output_names(tasks: list[PageTask]) -> None:
    """Raise ``PagesUsageError`` if two pages would be written under one name (compared as a case-insensitive
    file system compares them): two inputs of one stem (cover.png, cover.jpg), or a numbered file and a page of
    a file of several (book-0001.png, page 1 of book.tif); one page's outputs would replace the other's."""
    def where(task: PageTask) -> str:
        return task.path if task.stem == Path(task.path).stem else f"{task.path} page {task.number}"

    seen: dict[str, PageTask] = {}
    for task in tasks:
        other = seen.setdefault(task.stem.lower(), task)
        if other is not task:
            raise PagesUsageError(f"{where(other)} and {where(task)} would both be written as {task.stem}.*; "
                                  "run them into different --out folders")


# One recogniser per process: the worker processes of --jobs, or this process for --jobs 1.
_recognizer = None


def open_model(model: str | os.PathLike, threads: int | None = None, decoding: dict | None = None):
    """A ``Recognizer`` for ``model`` with ``decoding`` options; a file that is not an ONNX line model raises
    ``ModelFileError`` naming it (a bad language model: ``LanguageModelError``), not onnxruntime's own error."""
    from .metadata import ModelMetadataError
    from .recognizer import Recognizer

    try:
        return Recognizer(model, threads=threads, **(decoding or {}))
    except LanguageModelError:
        raise
    except ModelMetadataError as exc:
        raise ModelFileError(f"{model} is not a line model this program can read: {exc}") from None
    except Exception as exc:  # onnxruntime's own types (InvalidProtobuf, Fail, ...) for files it cannot load
        detail = " ".join(str(exc).split())
        raise ModelFileError(f"{model} is not a loadable ONNX model ({detail})") from None


def _open_recognizer(model: str, threads: int | None, decoding: dict | None = None) -> None:
    global _recognizer
    _recognizer = open_model(model, threads, decoding)


def _start_worker(model: str, threads: int | None, decoding: dict | None = None) -> None:
    # Ctrl-C reaches the whole process group: the main process ends the run; a worker finishes its page.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _open_recognizer(model, threads, decoding)


def _create_next_to(target: Path) -> tuple[int, Path]:
    """A new file next to ``target``, opened for writing, with the mode the umask allows (0666 & ~umask, as
    any file a program creates; mkstemp's would be 0600 whatever the umask)."""
    while True:
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.part")
        try:
            return os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), temporary
        except FileExistsError:
            continue


def write_outputs(outputs: dict[Path, str]) -> None:
    """Write each text (UTF-8) to a temporary file next to its target, then rename them all into place: a
    reader or an interrupted run never sees half a file, and if any of them fails (a full disk, text that
    cannot be encoded) none of them is left, nor any temporary file."""
    written: list[tuple[Path, Path]] = []
    try:
        for target, text in outputs.items():
            handle, temporary = _create_next_to(target)
            written.append((temporary, target))
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
        for temporary, target in written:
            os.replace(temporary, target)
    except BaseException:
        # A temporary file that is gone was renamed into place: judged by the file, not by a list appended to
        # after the rename, which a Ctrl-C between the two would leave behind the disk.
        for temporary, target in written:
            if temporary.exists():
                temporary.unlink(missing_ok=True)
            else:
                target.unlink(missing_ok=True)
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
        # The name written into the outputs is valid Unicode (a name that is not UTF-8 has U+FFFD for its bad
        # bytes); the outputs' own file names keep the input's bytes (task.stem).
        result = recognize_page(loaded.grey, _recognizer, image_name=unicode_name(Path(task.path).name))
        writers: dict[str, Callable[[], str]] = {
            "txt": result.to_text, "json": result.to_json, "alto": result.to_alto, "page": result.to_page_xml,
            "hocr": result.to_hocr}
        write_outputs({Path(out_dir) / f"{task.stem}{FORMAT_SUFFIXES[fmt]}": writers[fmt]() for fmt in formats})
    except Exception as exc:  # a page that breaks the layout or a full disk: report it, read the other pages
        return PageFailure(task.path, task.number, type(exc).__name__, str(exc))
    return PageDone(task, len(result.lines))


def run_tasks(tasks: list[PageTask], formats: list[str], out_dir: Path, model: Path, jobs: int,
              threads: int | None, decoding: dict | None = None,
              recognizer=None) -> Iterator[PageDone | PageFailure]:
    """Each page's outcome as it finishes (in input order with one job, in finishing order with several).
    With one job, ``recognizer`` (one already open) reads the pages if given."""
    global _recognizer
    read = functools.partial(read_page_task, formats=formats, out_dir=str(out_dir))
    if jobs == 1:
        if recognizer is not None:
            _recognizer = recognizer
        else:
            _open_recognizer(str(model), threads, decoding)
        yield from map(read, tasks)
        return
    import multiprocessing

    # spawn: each worker starts clean and opens its own onnxruntime session (no session or thread pool
    # inherited from a fork)
    pool = ProcessPoolExecutor(max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
                               initializer=_start_worker, initargs=(str(model), threads, decoding))
    try:
        # The workers start (on submit) with SIGINT blocked, and keep it blocked (a blocked signal stays blocked
        # across fork and exec, as multiprocessing's resource tracker is started): a Ctrl-C pressed while a worker
        # is still importing, before its initializer ignores SIGINT, would end it with a traceback. A Ctrl-C
        # meanwhile is not lost: it reaches this process when unblocked.
        unblocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            futures = [pool.submit(read, task) for task in tasks]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, unblocked)
        for future in as_completed(futures):
            yield future.result()
    except BaseException:
        # Ctrl-C, or the caller stopped reading: the pages not started are cancelled, the ones running finish
        # (whole files; a worker ignores Ctrl-C). One shutdown call: a second (a ``with`` block's exit) before
        # the pool has seen the first would take back its cancel_futures.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()


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


def main(args, model: Path, decoding: dict | None = None) -> int:
    """Run ``arabic-ocr pages`` with parsed ``args``, a ``model`` file and ``Recognizer`` decoding options
    (``recognition.cli_decoding``); returns the exit status. Everything that is bad usage (a format, a path,
    --out naming a file, a model or language model file that cannot be read, two pages of one output name)
    exits 2 before the --out folder is created or a page is read."""
    from tqdm import tqdm

    threads = args.threads or (1 if args.jobs > 1 else None)
    try:
        formats = parse_formats(args.format)
        if args.jobs < 1 or args.threads < 0:
            raise PagesUsageError("--jobs must be at least 1 and --threads at least 0")
        files = expand_page_files(args.paths)
        if args.out.exists() and not args.out.is_dir():
            raise PagesUsageError(f"--out {args.out} is a file, not a folder")
        # The model (and the language model, checked against the text convention the model writes) opened here,
        # once: it is this process's recogniser with one job; with several it is the check, and the workers
        # get the language model loaded.
        recognizer = open_model(model, threads, decoding)
        if decoding and decoding.get("language_model") is not None:
            decoding = {**decoding, "language_model": recognizer.decoder.lm}
        if args.jobs > 1:
            recognizer = None
        tasks, failures = plan(files)
    except (PagesUsageError, ModelFileError, LanguageModelError) as exc:
        print(f"arabic-ocr: {exc}", file=sys.stderr)
        return 2
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"arabic-ocr: cannot create the --out folder {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    lines = written = 0
    try:
        # tqdm draws only when stderr is a terminal (disable=None); piped or logged runs get the summary alone.
        with tqdm(total=len(tasks), unit="page", file=sys.stderr, disable=None, dynamic_ncols=True) as bar:
            outcomes = run_tasks(tasks, formats, args.out, model, args.jobs, threads, decoding, recognizer)
            for outcome in outcomes if tasks else ():
                if isinstance(outcome, PageFailure):
                    failures.append(outcome)
                    if not bar.disable:   # seen at once on a terminal; listed again in the summary
                        bar.write(f"arabic-ocr: failed: {outcome.describe()}", file=sys.stderr)
                else:
                    lines += outcome.lines
                    written += 1
                bar.update(1)
    except KeyboardInterrupt:
        print(f"arabic-ocr: interrupted; {written} page(s) written to {args.out}", file=sys.stderr)
        return 130
    failed_pages = len(failures)
    done = len(tasks) - sum(f.number is not None for f in failures)
    print(f"arabic-ocr: {done} page(s) written to {args.out} ({lines} lines, {', '.join(formats)})"
          + (f"; {failed_pages} failed:" if failures else ""), file=sys.stderr)
    for failure in sorted(failures, key=lambda f: (f.path, f.number or 0)):
        print(f"  {failure.describe()}", file=sys.stderr)
    return 1 if failures else 0
