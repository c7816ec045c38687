"""``arabic-ocr``: recognise line images and pages from the command line, without Django.

    arabic-ocr lines scans/ line.png --model models/arabic-crnn-v2-int8.onnx
    arabic-ocr lines scans/ --lm models/arabic-char-lm.npz   (beam search with a language model)
    arabic-ocr pages scans/ book.pdf --format alto --out results/    (``recognition.page_cli``)

Prints one JSON object per image (``file``, ``text``, ``confidence``,
``characters``; or ``file`` and ``error`` with its ``code``), UTF-8 JSON Lines
whatever the locale, and exits with 1 if any image could not be read. A file
name that is not valid UTF-8 is written with U+FFFD for its undecodable bytes.
``manage.py recognize`` is a wrapper over ``recognize_paths``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO

from . import cli_decoding, page_cli
from .char_lm import LanguageModelError
from .file_names import unicode_name
from .image import IMAGE_SUFFIXES

MODEL_ENV = "ARABIC_OCR_MODEL"
# The shipped model, when running from a checkout of the repository.
CHECKOUT_MODEL = Path(__file__).resolve().parent.parent / "models" / "arabic-crnn-v2-int8.onnx"


class UsageError(Exception):
    pass


def expand(paths: list[str]) -> list[Path]:
    """Files as given, folders searched recursively for images, in a stable order."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.is_file():
            files.append(p)
        else:
            raise UsageError(f"no such file or folder: {p}")
    return files


def records(recognizer, files: list[Path], batch: int) -> Iterator[dict]:
    """One JSON-ready record per file, recognised ``batch`` files at a time. ``file`` is the path as valid
    Unicode (``unicode_name``: a name that is not UTF-8 has U+FFFD for its bad bytes)."""
    for start in range(0, len(files), batch):
        chunk = files[start: start + batch]
        for path, outcome in zip(chunk, recognizer.recognize(chunk)):
            if hasattr(outcome, "text"):
                yield {"file": unicode_name(path), "text": outcome.text, "confidence": outcome.confidence,
                       "characters": [{"char": c.char, "confidence": c.confidence} for c in outcome.characters]}
            else:
                yield {"file": unicode_name(path), "error": {"code": outcome.code, "message": outcome.message}}


def recognize_paths(recognizer, paths: list[str], out: TextIO, batch: int = 16,
                    format_record: Callable[[dict], str] | None = None) -> tuple[int, int]:
    """Recognise files and folders, writing a line per image; returns (files, failures)."""
    return recognize_files(recognizer, expand(paths), out, batch, format_record)


def recognize_files(recognizer, files: list[Path], out: TextIO, batch: int = 16,
                    format_record: Callable[[dict], str] | None = None) -> tuple[int, int]:
    """Recognise listed files (one gone since it was listed fails only itself), writing a line per image;
    returns (files, failures)."""
    format_record = format_record or (lambda record: json.dumps(record, ensure_ascii=False))
    failures = 0
    for record in records(recognizer, files, batch):
        failures += "error" in record
        out.write(format_record(record) + "\n")
        out.flush()
    return len(files), failures


def default_model() -> Path | None:
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    return CHECKOUT_MODEL if CHECKOUT_MODEL.exists() else None


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="arabic-ocr", description="Printed Arabic OCR of line images and whole pages (ONNX model, CPU). Text comes out in logical "
                                       "Unicode order, with a confidence per line and per character.",
        epilog="examples:\n"
               "  arabic-ocr lines scans/ --model models/arabic-crnn-v2-int8.onnx > readings.jsonl\n"
               "  arabic-ocr pages book.pdf --format alto,txt --out results/ --jobs 2\n"
               "see `arabic-ocr lines --help` and `arabic-ocr pages --help`", formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    lines = commands.add_parser(
        "lines", help="recognise line images (one text line per image)",
        description="Recognise line images: files, or folders searched recursively for "
                    f"{', '.join(IMAGE_SUFFIXES)}. Prints one JSON object per image (UTF-8 JSON Lines): file, "
                    "text, confidence, characters [{char, confidence}], or file and error {code, message}. A file "
                    "name that is not valid UTF-8 is written with U+FFFD for its undecodable bytes. "
                    "Exits with 1 if any image could not be read, 2 on bad usage (a --model file that is not an "
                    "ONNX line model included).")
    lines.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    lines.add_argument("--model", type=Path, default=None,
                       help=f"an .onnx line model (default: ${MODEL_ENV}, else the shipped model of a checkout)")
    lines.add_argument("--batch", type=int, default=16, metavar="N", help="images read and recognised together")
    lines.add_argument("--threads", type=int, default=0, metavar="N", help="onnxruntime threads (0: its default)")
    cli_decoding.add_arguments(lines)
    page_cli.add_parser(commands)
    return top


def main(argv: list[str] | None = None) -> int:
    """The command as a function: SIGINT's handler is as it was when it returns, Ctrl-C or not."""
    return _run(argv, leave_ctrl_c_ignored=False)


def console_main() -> int:
    """The ``arabic-ocr`` console script: after a Ctrl-C, SIGINT stays ignored through the interpreter's exit
    (which puts back SIGINT's default action for a Python handler, not for an ignored signal), so that a second
    press there cannot kill it by the signal instead of exit status 130."""
    return _run(None, leave_ctrl_c_ignored=True)


def _run(argv: list[str] | None, leave_ctrl_c_ignored: bool) -> int:
    """``_first_ctrl_c`` is SIGINT's handler while the command runs, where the handler is Python's default on the
    main thread (an ignored SIGINT, as in a background job, or a caller's own handler is left alone; off the main
    thread no handler can be set). The handler is set inside the ``try``: a Ctrl-C that is already pending when
    it is set ends the command like any other."""
    handling = (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    try:
        if handling:
            signal.signal(signal.SIGINT, _first_ctrl_c)
        return _main(argv)
    except KeyboardInterrupt:   # Ctrl-C: a line, not a traceback (`pages` says how far it got)
        print("arabic-ocr: interrupted", file=sys.stderr)
        return 130
    finally:
        if handling and not (leave_ctrl_c_ignored and signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
            signal.signal(signal.SIGINT, signal.default_int_handler)


def _first_ctrl_c(signum, frame) -> None:
    """The first Ctrl-C raises KeyboardInterrupt, as Python's own handler does; from then on SIGINT is ignored
    while the command ends (the pages being read finish and are put in place, the worker pool shuts down, the
    last line is printed): a second KeyboardInterrupt in the middle of that would end it with a traceback."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def _main(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    model = args.model or default_model()
    if model is None or not model.is_file():
        print(f"arabic-ocr: no model file {model or ''} (give --model FILE or set {MODEL_ENV})".replace("  ", " "),
              file=sys.stderr)
        return 2
    try:
        decoding = cli_decoding.recognizer_options(args)
    except ValueError as exc:
        print(f"arabic-ocr: {exc}", file=sys.stderr)
        return 2
    if args.command == "pages":
        return page_cli.main(args, model, decoding)
    if args.batch < 1:
        print("arabic-ocr: --batch must be at least 1", file=sys.stderr)
        return 2
    try:
        files = expand(args.paths)  # fail on a missing path before loading the model
    except UsageError as exc:
        print(f"arabic-ocr: {exc}", file=sys.stderr)
        return 2
    try:
        recognizer = page_cli.open_model(model, args.threads or None, {"max_batch": args.batch, **decoding})
    except (LanguageModelError, page_cli.ModelFileError) as exc:
        print(f"arabic-ocr: {exc}", file=sys.stderr)
        return 2
    if hasattr(sys.stdout, "reconfigure"):   # JSON Lines are UTF-8, whatever the locale or PYTHONIOENCODING
        sys.stdout.reconfigure(encoding="utf-8", errors="strict")
    total, failures = recognize_files(recognizer, files, sys.stdout, args.batch)
    if failures:
        print(f"arabic-ocr: {failures} of {total} images could not be read", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(console_main())
