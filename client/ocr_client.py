#!/usr/bin/env python3
"""Send line images to the OCR service and print what it read.

    python client/ocr_client.py scans/ --url http://127.0.0.1:8000 --token TOKEN
    OCR_TOKEN=... python client/ocr_client.py a.png b.png --batch 16 --format tsv

Standard library only, so it runs anywhere Python does. Also a small library:

    from client.ocr_client import OcrClient
    client = OcrClient("http://127.0.0.1:8000", token)
    result = client.recognize("line.png")          # dict: id, text, confidence, ...
"""

from __future__ import annotations

import argparse
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
RETRY_STATUSES = {429, 500, 502, 503, 504}


class OcrError(Exception):
    """The service refused a file (4xx) or kept failing (5xx, network)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


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
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{Path(filename).name}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n".encode() + data + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class OcrClient:
    def __init__(self, url: str, token: str, retries: int = 5, timeout: float = 60.0, backoff: float = 0.5):
        self.url = url.rstrip("/")
        self.token = token
        self.retries, self.timeout, self.backoff = retries, timeout, backoff

    def _post(self, path: str, fields: list[tuple[str, str, bytes]]) -> dict:
        body, content_type = _multipart(fields)
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                self.url + path, data=body, method="POST",
                headers={"Authorization": f"Token {self.token}", "Content-Type": content_type,
                         "Accept": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read())
            except urllib.error.HTTPError as exc:
                payload = exc.read()
                if exc.code in RETRY_STATUSES and attempt < self.retries:
                    self._sleep(attempt, exc.headers.get("Retry-After"))
                    continue
                try:
                    error = json.loads(payload)["error"]
                    raise OcrError(error["message"], exc.code, error.get("code")) from None
                except (ValueError, KeyError, TypeError):
                    raise OcrError(f"HTTP {exc.code}: {payload[:200]!r}", exc.code) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                if attempt < self.retries:
                    self._sleep(attempt, None)
                    continue
                raise OcrError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from None
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
        return self._post("/api/v1/recognitions/batch/", fields)["results"]


def expand(paths: list[str]) -> list[Path]:
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ocr_client.py", description=__doc__.split("\n\n")[0],
                                     epilog="Exit code 1 if any file failed.")
    parser.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    parser.add_argument("--url", default=os.environ.get("OCR_URL", "http://127.0.0.1:8000"),
                        help="service URL (env OCR_URL; default %(default)s)")
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
    files = expand(args.paths)
    if not files:
        parser.error("no image files found")

    client = OcrClient(args.url, args.token, retries=args.retries)
    progress = Progress(len(files), not args.no_progress)
    out_lock = threading.Lock()
    failures = 0

    def emit(path: Path, result: dict | None, error: str | None) -> None:
        nonlocal failures
        with out_lock:
            if error is not None:
                failures += 1
                sys.stderr.write(f"{path}: {error}\n")
                record = {"file": str(path), "error": error}
            else:
                record = {"file": str(path), "text": result["text"], "confidence": result["confidence"],
                          "id": result["id"]}
            if args.format == "jsonl":
                print(json.dumps(record, ensure_ascii=False), flush=True)
            elif error is None:
                print(f"{path}\t{result['text']}\t{result['confidence']}\t{result['id']}", flush=True)

    def work_single(path: Path) -> None:
        try:
            emit(path, client.recognize(path, args.model), None)
            progress.update(1)
        except (OcrError, OSError) as exc:
            emit(path, None, str(exc))
            progress.update(1, 1)

    def work_batch(chunk: list[Path]) -> None:
        try:
            answers = client.recognize_batch(chunk, args.model)
        except (OcrError, OSError) as exc:
            for path in chunk:
                emit(path, None, str(exc))
            progress.update(len(chunk), len(chunk))
            return
        failed = 0
        for path, answer in zip(chunk, answers):
            if "result" in answer:
                emit(path, answer["result"], None)
            else:
                failed += 1
                emit(path, None, answer["error"]["message"])
        progress.update(len(chunk), failed)

    with ThreadPoolExecutor(max_workers=max(1, args.concurrency)) as pool:
        if args.batch > 0:
            jobs = [pool.submit(work_batch, files[i: i + args.batch]) for i in range(0, len(files), args.batch)]
        else:
            jobs = [pool.submit(work_single, f) for f in files]
        for job in as_completed(jobs):
            job.result()
    progress.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
