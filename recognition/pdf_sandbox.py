"""PDF pages counted and rendered by pdfium in a child process with capped memory and time.

A PDF can be small and still cost gigabytes: a 1 KB file whose content stream is
deflated twice inflates to 256 MiB inside pdfium (the cheap check in
``page_loader.check_pdf_streams`` sees one layer only), an image XObject can
declare 20 000 x 20 000 pixels, LZW and other filters nest at will. No check
before pdfium can foresee all of that, so pdfium never runs in the calling
(serving) process: each document gets one child, forked from a forkserver that
has already imported NumPy and pypdfium2 (a few milliseconds, not an interpreter
start), whose address space is capped with ``RLIMIT_AS`` and CPU time per page
with ``RLIMIT_CPU`` (the caller also gives up past a wall-clock deadline). The
child is handed the file's path where the caller has one (a job's stored book)
and opens the file itself, so a 300-MB PDF is not read, pickled and copied into
a child once per page; bytes (an upload in memory) are handed over as they are.
The child sends each page's grey pixels back over a pipe as it renders them;
whatever ends it (MemoryError, pdfium aborting on a failed allocation, the
clock) fails that document with an ``ImageError``, and the caller's memory
never holds more than one rendered page.

As with any forkserver child, the child imports the caller's ``__main__``
module: a script that reads PDFs must keep its work under
``if __name__ == "__main__":`` (gunicorn, Celery, pytest and ``arabic-ocr`` do).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.process
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator

import numpy as np

from .image import ImageError

PDF_DPI = 300
BASE_MEMORY_BYTES = 512 * 2**20   # pdfium's own working memory on an ordinary page, above what the child starts with
MEMORY_BYTES_PER_PIXEL = 8        # the rendered bitmap (4 bytes a pixel in pdfium) and its grey copies
DEFAULT_SECONDS = 60.0            # CPU seconds a page: an ordinary 300-dpi page renders in well under one
WALL_SECONDS_PER_CPU_SECOND = 3   # the caller's own deadline, for a machine shared with other work
COUNT_SECONDS = 30.0              # wall seconds to open and size every page of a document (no rendering)
MEMORY_ENV = "OCR_PDF_RENDER_MEMORY_MB"   # operators (and tests) may set a fixed cap instead
SECONDS_ENV = "OCR_PDF_RENDER_SECONDS"
ENCRYPTED = 4                     # FPDF_ERR_PASSWORD: pdfium needs a password to open the file


def memory_limit(max_pixels: int) -> int:
    """Bytes the child may add to its address space: enough to render the largest page allowed."""
    if os.environ.get(MEMORY_ENV):
        return int(float(os.environ[MEMORY_ENV]) * 2**20)
    return BASE_MEMORY_BYTES + MEMORY_BYTES_PER_PIXEL * max_pixels


def time_limit() -> float:
    return float(os.environ.get(SECONDS_ENV) or DEFAULT_SECONDS)


def wall_limit(seconds: float) -> float:
    """Wall seconds the caller waits for one page: a few times the most CPU time the child's cap lets through
    (the kernel counts ``RLIMIT_CPU`` in whole seconds, so up to a second more than asked), so that on a busy
    machine it is the CPU cap, not the caller's clock, that ends a page that burns CPU."""
    return WALL_SECONDS_PER_CPU_SECOND * (seconds + 1)


def pdf_pages(source: bytes | str | os.PathLike, max_pixels: int, decode: bool = True,
              numbers: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """``(number, grey)`` for the PDF's pages (all, or the 1-based ``numbers``), rendered at 300 dpi in a
    child process; with ``decode=False`` each page is only opened and sized (grey is empty).

    ``source`` is the PDF's bytes or its path; given a path, only the path goes to the child, which opens the
    file itself (pdfium reads the parts of it that the pages need).

    Raises ``ImageError``: ``corrupt_pdf``, ``encrypted_pdf``, ``no_such_page``, ``file_unavailable`` (a path
    that is gone or unreadable), ``image_too_large`` (a page
    over ``max_pixels``, or one that needs more memory or time than the child is given).
    """
    wanted = None if numbers is None else list(numbers)
    memory, seconds = memory_limit(max_pixels), time_limit()
    document = _for_the_child(source)
    receiver, sender = _CONTEXT.Pipe(duplex=False)
    with _STARTING, _allowed_to_start_children():
        child = _CONTEXT.Process(target=_render_in_child, name="pdf-render", daemon=True,
                                 args=(sender, document, max_pixels, decode, wanted, memory, seconds))
        child.start()
        _keep_to_ourselves(child)
    sender.close()
    rendered = 0
    # Counting is cheap for an honest PDF whatever its length; one whose pages all share a content bomb
    # would hold the caller (a web request) for pages x seconds: the whole count gets one deadline.
    count_deadline = None if decode else time.monotonic() + COUNT_SECONDS
    try:
        while True:
            page = (wanted[rendered] if rendered < len(wanted) else wanted[-1]) if wanted else rendered + 1
            wait = wall_limit(seconds)
            if count_deadline is not None:
                wait = min(wait, max(0.0, count_deadline - time.monotonic()))
            if not receiver.poll(wait):   # the child's own CPU cap failed to end it, or counting took too long
                if count_deadline is not None and time.monotonic() >= count_deadline:
                    raise ImageError("image_too_large", f"opening the PDF's pages took more than "
                                                        f"{COUNT_SECONDS:g} s (stopped at page {page})")
                raise ImageError("image_too_large", f"PDF page {page} took more than {seconds:g} s to render")
            try:
                message = receiver.recv()
                kind = message[0]
                if kind == "page" and decode:
                    grey = np.frombuffer(receiver.recv_bytes(), np.uint8).reshape(message[2])
            except EOFError:   # the child died without a word: out of CPU time, or pdfium aborted
                child.join(5)   # its exit status, which only this call reads (``_keep_to_ourselves``)
                raise _death(page, child.exitcode, memory, seconds) from None
            if kind == "page":
                _, number, shape = message
                if not decode:
                    grey = np.zeros((0, 0), np.uint8)
                rendered += 1
                yield number, grey
            elif kind == "error":
                raise ImageError(message[1], message[2])
            else:   # "done"
                return
    finally:
        # Killed before its pipe is closed: a child that outlived the caller's reading (Ctrl-C, a page abandoned)
        # must not meet a closed pipe on its next send and print a BrokenPipeError traceback on our stderr.
        if child.is_alive():
            child.kill()
        receiver.close()
        child.join()
        child.close()   # its exit-status pipe now, not when a traceback that holds this frame is dropped


def _for_the_child(source: bytes | str | os.PathLike) -> bytes | str:
    """What the child opens: the bytes, or the path made absolute (the child runs in the forkserver's working
    directory, which need not be the caller's)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    return os.path.abspath(os.fspath(source))


# Several threads of one process (gunicorn's) render PDFs at once. Starting a child briefly changes this process's
# multiprocessing config in a Celery pool process (``_allowed_to_start_children``): one thread at a time.
_STARTING = threading.Lock()


def _keep_to_ourselves(child) -> None:
    """Leave the child out of multiprocessing's list of this process's children, so that only the call that started
    it ever reads its exit status.

    A forkserver child's exit status is a few bytes the server writes once on a pipe, and every ``Process.start()``
    in the process (another thread's ``pdf_pages``) and ``active_children()`` poll every listed child. Two threads
    polling one child at once both see the pipe readable; one reads the status, the other reads end-of-file and
    records 255 over it ("perhaps the forkserver process itself got killed"): a page killed for its CPU time would
    be reported as one that ran out of memory. The child is not lost: the forkserver reaps it, and this call kills it
    if it still runs and closes its pipe."""
    multiprocessing.process._children.discard(child)


@contextlib.contextmanager
def _allowed_to_start_children():
    """Celery's pool processes are marked daemonic, and multiprocessing refuses to start a child from one (lest a
    terminated pool worker leave orphans). This child cannot linger: it is killed when its document is done or
    failed, the kernel ends it past its CPU time per page, and it ends on a pipe whose reader is gone. Such a
    process's authkey is billiard's kind, which refuses to be pickled for the child: made ours, same bytes."""
    config = multiprocessing.current_process()._config   # in a pool process, a billiard Process
    config["authkey"] = multiprocessing.process.AuthenticationString(bytes(config["authkey"]))
    daemonic = config.pop("daemon", None)
    try:
        yield
    finally:
        if daemonic is not None:
            config["daemon"] = daemonic


def _death(page: int, exitcode: int | None, memory: int, seconds: float) -> ImageError:
    """Why a child that said nothing more died: its CPU time, or (pdfium aborts on a failed allocation) memory."""
    if exitcode == -signal.SIGXCPU:
        return ImageError("image_too_large", f"PDF page {page} took more than {seconds:g} s of CPU time to render")
    try:
        how = f"stopped by {signal.Signals(-exitcode).name}" if exitcode is not None and exitcode < 0 \
            else f"exit status {exitcode}"
    except ValueError:
        how = f"exit status {exitcode}"
    return ImageError("image_too_large", f"PDF page {page} could not be rendered within {memory // 2**20} MiB "
                                         f"of memory (the renderer was {how})")


def _render_in_child(sender, document: bytes | str, max_pixels: int, decode: bool, numbers: list[int] | None,
                     memory: int, seconds: float) -> None:
    """The child's whole life: cap itself, open the PDF (its bytes or its path), send each page, say done or why
    not. Ctrl-C (SIGINT to the terminal's whole process group) is ignored: the caller ends the child when it
    stops, and a KeyboardInterrupt here would only print a traceback on the caller's stderr."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _cap_address_space(memory)
    _cap_cpu_time(seconds)
    _no_core_dumps()
    try:
        for number, grey in _render(document, max_pixels, decode, numbers):
            sender.send(("page", number, grey.shape))
            if decode:
                sender.send_bytes(grey.reshape(-1))   # flat: a 2-D buffer would be sent by its first axis
            del grey
            _cap_cpu_time(seconds)   # the next page gets its own allowance
        sender.send(("done",))
    except ImageError as exc:
        sender.send(("error", exc.code, exc.message))
    except MemoryError:
        sender.send(("error", "image_too_large", f"the PDF needs more than {memory // 2**20} MiB of memory "
                                                 "to render"))
    except Exception as exc:   # anything else pdfium or Pillow raise on a malformed file: the file's fault
        sender.send(("error", "corrupt_pdf", f"the PDF cannot be rendered ({type(exc).__name__}: {exc})"))
    finally:
        sender.close()


def _no_core_dumps() -> None:
    """A child ended by SIGXCPU, or by pdfium aborting on a refused allocation, must not write a core file
    the size of its memory cap: an attacker's bombs would fill the disk."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ImportError, ValueError, OSError):
        pass


def _cap_address_space(extra: int) -> None:
    """Let the child grow by ``extra`` bytes of address space beyond what it has now (Linux; elsewhere no cap)."""
    try:
        import resource
        with open("/proc/self/statm") as statm:
            current = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (ImportError, OSError, ValueError):
        return
    limit = current + extra
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _cap_cpu_time(seconds: float) -> None:
    """SIGXCPU ends the child once it has used ``seconds`` more CPU time, whether or not anyone still waits."""
    try:
        import resource
    except ImportError:
        return
    used = resource.getrusage(resource.RUSAGE_SELF)
    limit = int(used.ru_utime + used.ru_stime + seconds) + 1
    resource.setrlimit(resource.RLIMIT_CPU, (limit, resource.RLIM_INFINITY))


def _render(document: bytes | str, max_pixels: int, decode: bool,
            numbers: list[int] | None) -> Iterator[tuple[int, np.ndarray]]:
    import pypdfium2

    try:
        pdf = pypdfium2.PdfDocument(document)   # a str is a path: pdfium opens the file and reads what it needs
    except OSError as exc:   # the path: gone or unreadable since the caller looked at it
        # Not the sender's fault, and the server's paths are not theirs to see.
        raise ImageError("file_unavailable", f"the stored PDF could not be opened ({exc.strerror or 'unreadable'})") from None
    except pypdfium2.PdfiumError as exc:
        if exc.err_code == ENCRYPTED:
            raise ImageError("encrypted_pdf", "the PDF is encrypted and needs a password to open; "
                                              "send it decrypted") from None
        raise ImageError("corrupt_pdf", f"the PDF cannot be read ({exc})") from None
    try:
        count = len(pdf)
        for number in range(1, count + 1) if numbers is None else numbers:
            if not 1 <= number <= count:
                raise ImageError("no_such_page", f"the PDF has {count} pages, not {number}")
            yield number, _page(pdf, number, max_pixels, decode)
    finally:
        pdf.close()


def _page(pdf, number: int, max_pixels: int, decode: bool) -> np.ndarray:
    import pypdfium2

    try:
        page = pdf[number - 1]
    except pypdfium2.PdfiumError as exc:   # e.g. a page tree whose /Count promises missing pages
        raise ImageError("corrupt_pdf", f"PDF page {number} cannot be read ({exc})") from None
    try:
        width_pt, height_pt = page.get_size()
        pixels = (width_pt * PDF_DPI / 72) * (height_pt * PDF_DPI / 72)
        if pixels > max_pixels:
            raise ImageError("image_too_large", f"PDF page {number} would be {int(pixels)} pixels "
                                                f"at {PDF_DPI} dpi; the limit is {max_pixels}")
        if not decode:
            return np.zeros((0, 0), np.uint8)
        try:
            bitmap = page.render(scale=PDF_DPI / 72, grayscale=True)
        except pypdfium2.PdfiumError as exc:
            raise ImageError("corrupt_pdf", f"PDF page {number} cannot be rendered ({exc})") from None
        grey = np.asarray(bitmap.to_pil().convert("L"), dtype=np.uint8).copy()
        if grey.min() == 255:
            _check_images_were_drawn(page, number)
        return grey
    finally:
        page.close()


def _check_images_were_drawn(page, number: int) -> None:
    """A page that rendered blank while it holds images: pdfium, refused the memory to decode an image, leaves it
    out without a word (a scanned page would come back blank and be read as empty). Each image is decoded on its
    own to tell that from an image that is white (a cleaned-up scan of a blank page)."""
    import pypdfium2

    for image in page.get_objects(filter=(pypdfium2.raw.FPDF_PAGEOBJ_IMAGE,)):
        try:
            image.get_bitmap()   # freed when dropped (closing a bitmap pdfium owns warns)
        except (pypdfium2.PdfiumError, MemoryError):
            width, height = image.get_px_size()
            raise ImageError("image_too_large", f"PDF page {number} holds a {width}x{height}-pixel image that "
                                                "cannot be drawn within the memory limit") from None


# Forked from a clean server process, never from the caller (a threaded web worker: forking it could copy a
# held lock); the server imports the renderer's libraries (and the caller's main module, multiprocessing's
# default) once, so each child starts in milliseconds: ~30-50 ms a document over rendering in-process.
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["__main__", "numpy", "pypdfium2", "PIL.Image", __name__])
