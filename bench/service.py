"""The service under load: throughput, latency, errors; cold start and memory.

    # against a running service
    python -m bench.service ../shared/datasets/openiti-gs --url http://127.0.0.1:8000 --token TOKEN
    # or let the bench start gunicorn itself (also measures cold start and RSS)
    python -m bench.service ../shared/datasets/openiti-gs --start-server --workers 2

N concurrent clients (threads, loopback only) post real line images for T
seconds to the single endpoint, then to the batch endpoint. Every request
carries a unique image (the PNG gets a counter in a text chunk), so the
service's cache never answers in the model's place. Prints a table and writes
``bench/results/service.json``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import struct
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import zlib
from pathlib import Path

import numpy as np

from bench.machine import RESULTS, machine
from bench.processes import children, rss_mb
from recognition.line_data import SkipReport, iter_samples

ROOT = Path(__file__).resolve().parent.parent


def unique_png(png: bytes, counter: int) -> bytes:
    """The same pixels with a distinct tEXt chunk, so its SHA-256 is new."""
    if not png.startswith(b"\x89PNG"):
        return png
    data = b"bench\x00" + str(counter).encode()
    chunk = struct.pack(">I", len(data)) + b"tEXt" + data + struct.pack(">I", zlib.crc32(b"tEXt" + data))
    return png[:-12] + chunk + png[-12:]  # before IEND


def multipart(field: str, files: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="l{i}.png"\r\n'
             f"Content-Type: image/png\r\n\r\n".encode() + data + b"\r\n" for i, data in enumerate(files)]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def drive(url: str, token: str, images: list[bytes], path: str, per_request: int, clients: int,
          seconds: float, max_requests: int) -> dict:
    parsed = urllib.parse.urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the load bench only targets loopback addresses")
    latencies: list[float] = []
    errors: dict[str, int] = {}
    lines = [0]
    lock = threading.Lock()
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds
    sent = [0]

    def client():
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                if sent[0] >= max_requests:
                    return
                sent[0] += 1
                ids = [next(counter) for _ in range(per_request)]
            body, content_type = multipart("images" if per_request > 1 else "image",
                                           [unique_png(images[i % len(images)], i) for i in ids])
            began = time.perf_counter()
            try:
                connection.request("POST", path, body, {"Authorization": f"Token {token}",
                                                        "Content-Type": content_type})
                response = connection.getresponse()
                payload = response.read()
                elapsed = (time.perf_counter() - began) * 1000
                ok = response.status in (200, 201)
                if ok and per_request > 1:
                    ok = all("result" in r for r in json.loads(payload)["results"])
                with lock:
                    if ok:
                        latencies.append(elapsed)
                        lines[0] += per_request
                    else:
                        errors[str(response.status)] = errors.get(str(response.status), 0) + 1
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                connection.close()
                connection = http.client.HTTPConnection(parsed.hostname, parsed.port or 80, timeout=60)

    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    lat = np.array(latencies) if latencies else np.array([float("nan")])
    return {"endpoint": path, "images_per_request": per_request, "clients": clients, "seconds": round(wall, 1),
            "requests": len(latencies), "requests_per_s": round(len(latencies) / wall, 1),
            "lines_per_s": round(lines[0] / wall, 1), "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p95_ms": round(float(np.percentile(lat, 95)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "errors": sum(errors.values()), "errors_by_kind": errors}


def start_server(port: int, workers: int, threads: int, env_extra: dict) -> tuple[subprocess.Popen, dict]:
    """Start gunicorn on a scratch database; return it with cold-start figures."""
    var = ROOT / "var" / "bench"
    # MALLOC_ARENA_MAX as the README's production command sets it: glibc's
    # per-thread arenas otherwise fragment a threaded worker's memory.
    env = {**os.environ, "OCR_VAR_DIR": str(var), "OCR_THROTTLE_RATE": "100000/min", "MALLOC_ARENA_MAX": "2",
           **env_extra}
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    token = subprocess.run([python, "manage.py", "create_api_token", "bench"], cwd=ROOT, env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
    began = time.monotonic()
    server = subprocess.Popen([python, "-m", "gunicorn", "ocr_project.wsgi", "--workers", str(workers),
                               "--threads", str(threads), "--bind", f"127.0.0.1:{port}", "--log-level", "warning"],
                              cwd=ROOT, env=env)
    ready_after = None
    while time.monotonic() - began < 60:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                ready_after = time.monotonic() - began
                break
        except OSError:
            pass
        time.sleep(0.05)
    if ready_after is None:
        server.terminate()
        raise SystemExit("the service did not become ready in 60 s")
    # every worker warms up on its own; ask until all have answered ready
    time.sleep(1.0)
    worker_rss = [round(rss_mb(pid), 1) for pid in children(server.pid)]
    return server, {"token": token, "ready_seconds": round(ready_after, 2), "worker_rss_mb": worker_rss,
                    "workers": workers, "threads": threads}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.service", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="+", help="line folders to take images from")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--token", default=os.environ.get("OCR_TOKEN"))
    parser.add_argument("--start-server", action="store_true", help="start gunicorn here (cold start, RSS)")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-requests", type=int, default=20000, help="hard cap per phase")
    parser.add_argument("--images", type=int, default=200, help="distinct line images to cycle through")
    parser.add_argument("--out", default=str(RESULTS / "service.json"))
    args = parser.parse_args(argv)

    images = []
    for sample in iter_samples(args.data, SkipReport()):
        if sample.image_path.suffix.lower() == ".png":
            images.append(sample.image_path.read_bytes())
        if len(images) >= args.images:
            break
    server, startup = None, {}
    url, token = args.url, args.token
    if args.start_server:
        server, startup = start_server(args.port, args.workers, args.threads, {})
        url, token = f"http://127.0.0.1:{args.port}", startup.pop("token")
    if not token:
        parser.error("--token or OCR_TOKEN is needed (or --start-server)")
    try:
        phases = [
            drive(url, token, images, "/api/v1/recognitions/", 1, args.clients, args.seconds, args.max_requests),
            drive(url, token, images, "/api/v1/recognitions/batch/", args.batch_size, args.clients, args.seconds,
                  args.max_requests),
        ]
        if server is not None:
            startup["worker_rss_mb_after_load"] = [round(rss_mb(pid), 1) for pid in children(server.pid)]
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    print(f"\n{'endpoint':<30} {'img/req':>7} {'clients':>7} {'req/s':>7} {'lines/s':>8} {'p50':>7} {'p95':>7} "
          f"{'p99':>7} {'errors':>6}")
    for p in phases:
        print(f"{p['endpoint']:<30} {p['images_per_request']:>7} {p['clients']:>7} {p['requests_per_s']:>7} "
              f"{p['lines_per_s']:>8} {p['p50_ms']:>7} {p['p95_ms']:>7} {p['p99_ms']:>7} {p['errors']:>6}")
    if startup:
        print(f"\ncold start to /readyz: {startup['ready_seconds']} s; worker RSS after warm-up "
              f"{startup['worker_rss_mb']} MB, after load {startup.get('worker_rss_mb_after_load')} MB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"url": url, "machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"),
                               "startup": startup, "phases": phases}, indent=1), encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
