#!/usr/bin/env python3
"""Send line images to the OCR service and print what it read.

    python client/ocr_client.py scans/ --url http://127.0.0.1:8000 --token TOKEN
    OCR_TOKEN=... python client/ocr_client.py a.png b.png --batch 16 --format tsv
    OCR_TOKEN=... python client/ocr_client.py --job book.pdf scans/ --out results/   # a book as a job

Standard library only, so it runs anywhere Python does. Also a small library:

    from client.ocr_client import OcrClient
    client = OcrClient("http://127.0.0.1:8000", token)
    result = client.recognize("line.png")          # dict: id, text, confidence, ...
    job = client.submit_job(["book.pdf"])           # dict: id, status, pages_total, ...
    job = client.wait_job(job["id"], on_progress=print)
    client.download_results(job["id"], "results/")  # unpacked: pages/NAME.txt, .alto.xml, ..., recognitions.csv
"""

from __future__ import annotations

import argparse
import http.client
import json
import mimetypes
import os
import random
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif"}
PAGE_SUFFIXES = IMAGE_SUFFIXES | {".pdf", ".zip"}
FINISHED = {"done", "failed", "cancelled"}
RETRY_STATUSES = {429, 500, 502, 503, 504}
DEFAULT_URL = "http://127.0.0.1:8000"


class OcrError(Exception):
    """The service refused a file (4xx) or kept failing (5xx, network)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


def display_name(path: str | os.PathLike) -> str:
    """A file name or path as valid Unicode, for what is sent or printed about it: bytes that are not UTF-8
    (which Python holds as lone surrogates, so that the file still opens) become U+FFFD."""
    return os.fsencode(path).decode("utf-8", "replace")


def _part_filename(path: str) -> str:
    """The filename of a multipart part: valid Unicode (``display_name``), with the characters that would end
    the quoted header value escaped as browsers escape them."""
    name = display_name(Path(path).name)
    return name.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def _multipart(fields: list[tuple[str, str | None, bytes]]) -> tuple[bytes, str]:
    """Encode (field, filename, data) parts; a None filename makes a plain form field."""
    boundary = uuid.uuid4().hex
    parts = []
    for field, filename, data in fields:
        if filename is None:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n'.encode()
                         + data + b"\r\n")
            continue
        content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{_part_filename(filename)}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class OcrClient:
    def __init__(self, url: str, token: str, retries: int = 5, timeout: float = 60.0, backoff: float = 0.5):
        self.url = url.rstrip("/")
        self.token = token
        self.retries, self.timeout, self.backoff = retries, timeout, backoff

    def _post(self, path: str, fields: list[tuple[str, str, bytes]], headers: dict[str, str] | None = None) -> dict:
        body, content_type = _multipart(fields)
        return self._request_json("POST", path, body, content_type, headers)

    def _get(self, path: str) -> dict:
        return self._request_json("GET", path)

    def _request_json(self, method: str, path: str, body: bytes | None = None,
                      content_type: str | None = None, headers: dict[str, str] | None = None) -> dict:
        """The JSON answer to a request; an answer that is not JSON fails the request like a dropped
        connection (retried, then ``OcrError``)."""
        return self._request(method, path, body, content_type, parse=json.loads, extra_headers=headers)

    def _request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None,
                 parse=None, extra_headers: dict[str, str] | None = None):
        """The answer's body (``parse(body)`` with ``parse``). 429 and 5xx answers, network errors, answers cut
        short and answers ``parse`` refuses (a ValueError) are retried ``retries`` times, each with the same
        ``extra_headers``; then, like any other refusal, they raise ``OcrError``."""
        for attempt in range(self.retries + 1):
            headers = {"Authorization": f"Token {self.token}", "Accept": "application/json", **(extra_headers or {})}
            if content_type:
                headers["Content-Type"] = content_type
            request = urllib.request.Request(self.url + path, data=body, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    data = response.read()
            except urllib.error.HTTPError as exc:
                try:
                    payload = exc.read()
                except (http.client.HTTPException, OSError):
                    payload = b""
                if exc.code in RETRY_STATUSES and attempt < self.retries:
                    self._sleep(attempt, exc.headers.get("Retry-After"))
                    continue
                try:
                    error = json.loads(payload)["error"]
                    raise OcrError(error["message"], exc.code, error.get("code")) from None
                except (ValueError, KeyError, TypeError):
                    raise OcrError(f"HTTP {exc.code}: {payload[:200]!r}", exc.code) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                problem = f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}"
            except http.client.HTTPException as exc:   # IncompleteRead: the connection dropped mid-answer
                problem = f"the answer from {self.url}{path} was cut short or malformed ({exc!r})"
            else:
                if parse is None:
                    return data
                try:
                    return parse(data)
                except ValueError as exc:
                    problem = f"the answer from {self.url}{path} is not what was expected ({exc}): {data[:200]!r}"
            if attempt < self.retries:
                self._sleep(attempt, None)
                continue
            raise OcrError(problem)
        raise OcrError("unreachable")  # the loop always returns or raises

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * 2 ** attempt * (0.5 + random.random())
        if retry_after:
            try:
                delay = max(delay, float(retry_after))
            except ValueError:
                pass
        time.sleep(min(delay, 30.0))

    def recognize(self, path: str | Path, model: str | None = None) -> dict:
        fields = [("image", str(path), Path(path).read_bytes())]
        if model:
            fields.append(("model", None, model.encode()))
        return self._post("/api/v1/recognitions/", fields)

    def recognize_batch(self, paths: list[str | Path], model: str | None = None) -> list[dict]:
        """One request for several files: a result or an error per file, in order."""
        fields: list[tuple[str, str | None, bytes]] = [("images", str(p), Path(p).read_bytes()) for p in paths]
        if model:
            fields.append(("model", None, model.encode()))
        answer = self._post("/api/v1/recognitions/batch/", fields)
        results = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(results, list) or len(results) != len(paths):
            raise OcrError(f"the batch answer from {self.url} does not hold a result for each of {len(paths)} files")
        return results

    # -- books as jobs ---------------------------------------------------------------
    def submit_job(self, paths: list[str | Path], name: str | None = None, model: str | None = None,
                   formats: str | None = None) -> dict:
        """Upload page images, TIFFs, PDFs or zips as one job; answers at once (status queued).

        Each call sends a fresh ``Idempotency-Key``, the same on all its retries: a retry of a POST that reached
        the server (its answer lost or cut short) answers the job that POST created instead of a second one."""
        fields: list[tuple[str, str | None, bytes]] = [("files", str(p), Path(p).read_bytes()) for p in paths]
        for key, value in (("name", name), ("model", model), ("formats", formats)):
            if value:
                fields.append((key, None, value.encode()))
        return self._post("/api/v1/jobs/", fields, headers={"Idempotency-Key": str(uuid.uuid4())})

    def job(self, job_id: int) -> dict:
        return self._get(f"/api/v1/jobs/{job_id}/")

    def cancel_job(self, job_id: int) -> dict:
        return self._request_json("POST", f"/api/v1/jobs/{job_id}/cancel/")

    def wait_job(self, job_id: int, on_progress=None, interval: float = 1.0) -> dict:
        """Poll until the job is done, failed or cancelled; ``on_progress(job)`` after every poll."""
        while True:
            state = self.job(job_id)
            if on_progress:
                on_progress(state)
            if state["status"] in FINISHED:
                return state
            time.sleep(interval)

    def download_results(self, job_id: int, out_dir: str | Path) -> list[Path]:
        """Fetch results.zip and unpack it into ``out_dir``; returns the files written. Each file is written
        whole or not at all (a temporary file renamed into place); a results.zip that is not a readable zip
        raises ``OcrError``, and so does a member that cannot be read (the files before it are kept)."""
        import io
        import zipfile
        import zlib

        data = self._request("GET", f"/api/v1/jobs/{job_id}/results.zip")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
        except zipfile.BadZipFile as exc:
            raise OcrError(f"job {job_id}'s results.zip ({len(data)} bytes) is not a readable zip: {exc}") from None
        with archive:
            for member in archive.infolist():
                if member.is_dir():
                    continue
                target = (out / member.filename).resolve()
                if out.resolve() not in target.parents:   # never write outside out_dir
                    raise OcrError(f"unsafe path in results: {member.filename}")
                try:
                    content = archive.read(member)
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, ValueError) as exc:
                    raise OcrError(f"job {job_id}'s results.zip is damaged: {member.filename}: {exc}") from None
                target.parent.mkdir(parents=True, exist_ok=True)
                _write_whole(target, content)
                written.append(target)
        return written


def _write_whole(target: Path, content: bytes) -> None:
    """Write next to ``target`` and rename: never half a file, whatever stops the write. The file gets the mode
    the umask allows, as any file a program creates."""
    while True:
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(content)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def expand(paths: list[str], suffixes: set[str] = IMAGE_SUFFIXES) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in suffixes))
        else:
            files.append(p)
    return files


class Progress:
    """A one-line progress counter on stderr (only when stderr is a terminal)."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.failed = total, 0, 0
        self.enabled = enabled and sys.stderr.isatty()
        self.lock = threading.Lock()
        self.start = time.monotonic()

    def update(self, count: int, failed: int = 0) -> None:
        with self.lock:
            self.done += count
            self.failed += failed
            if self.enabled:
                rate = self.done / max(time.monotonic() - self.start, 1e-9)
                sys.stderr.write(f"\r{self.done}/{self.total} files, {self.failed} failed, {rate:.1f}/s ")
                sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")


def job_progress_line(job: dict, width: int = 30) -> str:
    """``[#####.....] 12/50 pages, 1 failed, 31.2 pages/min, ETA 1m13s``"""
    total = max(job["pages_total"], 1)
    finished = job["pages_done"] + job["pages_failed"] + job.get("pages_cancelled", 0)
    filled = int(width * finished / total)
    line = f"[{'#' * filled}{'.' * (width - filled)}] {finished}/{job['pages_total']} pages"
    if job["pages_failed"]:
        line += f", {job['pages_failed']} failed"
    timings = job.get("timings") or {}
    if timings.get("pages_per_minute"):
        line += f", {timings['pages_per_minute']:.1f} pages/min"
    if job["status"] in FINISHED:
        line += f", {job['status']}"
    elif timings.get("eta_s") is not None:
        minutes, seconds = divmod(int(timings["eta_s"]), 60)
        line += f", ETA {minutes}m{seconds:02d}s" if minutes else f", ETA {seconds}s"
    else:
        line += f", {job['status']}"
    return line


def run_job(args, client: OcrClient) -> int:
    """--job: upload, show progress, download and unpack; 1 if any page failed or the job did not finish."""
    files = expand(args.paths, PAGE_SUFFIXES)
    if not files:
        raise OcrError("no page files found (images, TIFFs, PDFs, zips)")
    job = client.submit_job(files, name=args.name, model=args.model, formats=args.formats)
    sys.stderr.write(f"job {job['id']}: {job['pages_total']} pages queued ({job['url']})\n")
    tty = sys.stderr.isatty() and not args.no_progress
    last = [""]

    def show(state: dict) -> None:
        line = job_progress_line(state)
        if args.no_progress or line == last[0]:
            return
        last[0] = line
        sys.stderr.write(f"\r{line}   " if tty else line + "\n")
        sys.stderr.flush()

    try:
        job = client.wait_job(job["id"], on_progress=show, interval=args.poll)
    except KeyboardInterrupt:
        client.cancel_job(job["id"])
        sys.stderr.write(f"\njob {job['id']} cancelled\n")
        return 130
    if tty:
        sys.stderr.write("\n")
    written = client.download_results(job["id"], args.out)
    sys.stderr.write(f"{len(written)} files in {args.out}\n")
    for failure in job["failures"]:
        sys.stderr.write(f"page {failure['page']} ({failure['file']}): {failure['code']}: {failure['message']}\n")
    print(json.dumps({k: job[k] for k in ("id", "status", "pages_total", "pages_done", "pages_failed")}))
    return 0 if job["status"] == "done" and not job["pages_failed"] else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ocr_client.py", description=__doc__.split("\n\n")[0],
                                     epilog="Exit code 1 if any file failed.")
    parser.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--job", action="store_true",
                        help="send the files (page images, TIFFs, PDFs, zips; folders searched) as one book job")
    parser.add_argument("--out", help="--job: folder to unpack the results into")
    parser.add_argument("--name", help="--job: the job's name (default: the first file's)")
    parser.add_argument("--formats", help="--job: per-page outputs, comma-separated: txt,alto,page,hocr (default all)")
    parser.add_argument("--poll", type=float, default=1.0, help="--job: seconds between progress checks")
    parser.add_argument("--url", default=os.environ.get("OCR_URL") or DEFAULT_URL,
                        help="service URL (env OCR_URL; default %(default)s, where `make serve` listens)")
    parser.add_argument("--token", default=os.environ.get("OCR_TOKEN"), help="API token (env OCR_TOKEN)")
    parser.add_argument("--concurrency", type=int, default=4, help="requests in flight (default %(default)s)")
    parser.add_argument("--batch", type=int, default=0, help="send N files per request to the batch endpoint")
    parser.add_argument("--format", choices=["jsonl", "tsv"], default="jsonl")
    parser.add_argument("--model", help="a registered model name or version (default: the active one)")
    parser.add_argument("--retries", type=int, default=5, help="retries on 429/5xx/network errors")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("an API token is needed: --token or OCR_TOKEN (python manage.py create_api_token NAME)")
    if args.job:
        if not args.out:
            parser.error("--job needs --out DIR for the results")
        try:
            return run_job(args, OcrClient(args.url, args.token, retries=args.retries))
        except (OcrError, OSError) as exc:
            sys.stderr.write(f"error: {exc}\n")
            return 2
    files = expand(args.paths)
    if not files:
        parser.error("no image files found")
    if hasattr(sys.stdout, "reconfigure"):   # what is printed is UTF-8, whatever the locale
        sys.stdout.reconfigure(encoding="utf-8")

    client = OcrClient(args.url, args.token, retries=args.retries)
    progress = Progress(len(files), not args.no_progress)
    out_lock = threading.Lock()
    failures = 0
    # Answers arrive in any order (several requests in flight); they are printed in the
    # order of the input files, each as soon as every file before it has been answered.
    waiting: dict[int, tuple[Path, dict | None, str | None]] = {}
    next_to_print = 0

    def write(path: Path, result: dict | None, error: str | None) -> None:
        nonlocal failures
        if error is not None:
            failures += 1
            sys.stderr.write(f"{path}: {error}\n")
            record = {"file": display_name(path), "error": error}
        else:
            record = {"file": display_name(path), "text": result["text"], "confidence": result["confidence"],
                      "id": result["id"]}
        if args.format == "jsonl":
            print(json.dumps(record, ensure_ascii=False), flush=True)
        elif error is None:
            print(f"{display_name(path)}\t{result['text']}\t{result['confidence']}\t{result['id']}", flush=True)

    def emit(index: int, result: dict | None, error: str | None) -> None:
        nonlocal next_to_print
        with out_lock:
            waiting[index] = (files[index], result, error)
            while next_to_print in waiting:
                write(*waiting.pop(next_to_print))
                next_to_print += 1

    def work_single(index: int) -> None:
        try:
            emit(index, client.recognize(files[index], args.model), None)
            progress.update(1)
        except (OcrError, OSError) as exc:
            emit(index, None, str(exc))
            progress.update(1, 1)

    def work_batch(start: int) -> None:
        indexes = list(range(start, min(start + args.batch, len(files))))
        try:
            answers = client.recognize_batch([files[i] for i in indexes], args.model)
        except (OcrError, OSError) as exc:
            for index in indexes:
                emit(index, None, str(exc))
            progress.update(len(indexes), len(indexes))
            return
        failed = 0
        for index, answer in zip(indexes, answers):
            if "result" in answer:
                emit(index, answer["result"], None)
            else:
                failed += 1
                emit(index, None, answer["error"]["message"])
        progress.update(len(indexes), failed)

    with ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool:
        if args.batch > 0:
            jobs = [pool.submit(work_batch, i) for i in range(0, len(files), args.batch)]
        else:
            jobs = [pool.submit(work_single, i) for i in range(len(files))]
        for job in as_completed(jobs):
            job.result()
    progress.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
