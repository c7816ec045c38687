"""Soak: gunicorn + PostgreSQL under 16 clients, a model switch and a killed worker mid-run.

    python -m bench.soak                                  # 60 s, rendered lines, scratch PostgreSQL database
    python -m bench.soak --seconds 300 --data LINE_FOLDER  # longer, on real line images

Starts gunicorn exactly as `make serve` does (ocr_project/gunicorn.conf.py) on a
scratch PostgreSQL database (created and dropped here) and drives it with N
clients posting line images: mostly new contents (a counter in a PNG text
chunk), one request in ten re-sending a recent one, so the result cache and
its unique constraint are exercised under load. A third of the way in, one
worker is SIGKILLed (gunicorn starts another); halfway, another model version
is registered and activated. A request that loses its connection (the killed
worker was holding it) is retried once by the client and counted apart.

Reports requests, errors (must be 0), retried requests, p50/p99, the database
connections at peak, the model versions answers came from, and whether every
stored recognition has its file (``manage.py check_storage``). Writes
``bench/results/soak.json`` and ``soak.png`` (latency over time, with the kill
and the switch marked).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import numpy as np

from bench.machine import RESULTS, machine
from bench.processes import children
from bench.service import multipart, unique_png
from tests.service.server_process import wait_until_ready

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def rendered_lines(count: int) -> list[bytes]:
    """PNG lines rendered from the shipped corpus with an installed Arabic book face."""
    import io

    from PIL import Image

    from training.fonts import find_book_fonts
    from training.synth import render_text

    faces = find_book_fonts()
    if not faces:
        raise SystemExit("no Arabic book font installed: make bench-deps (or pass --data LINE_FOLDER)")
    words = " ".join((ROOT / "datasets/corpus/phrases.txt").read_text(encoding="utf-8").split()).split()
    lines = []
    for i in range(count):
        text = " ".join(words[(7 * i) % len(words):][:3 + i % 5]) or "قال"
        buffer = io.BytesIO()
        Image.fromarray(render_text(text, faces[i % len(faces)], 36, pad=6)).save(buffer, format="PNG")
        lines.append(buffer.getvalue())
    return lines


def folder_lines(folder: str, count: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted(Path(folder).rglob("*.png"))[:count]]


class Service:
    def __init__(self, database_url: str, port: int, workers: int, threads: int, var: Path):
        self.env = {**os.environ, "DATABASE_URL": database_url, "OCR_VAR_DIR": str(var),
                    "MEDIA_ROOT": str(var / "media"), "OCR_THROTTLE_RATE": "1000000/min", "MALLOC_ARENA_MAX": "2",
                    "OCR_ACTIVE_MODEL_CHECK_SECONDS": "2", "GUNICORN_WORKERS": str(workers),
                    "GUNICORN_THREADS": str(threads), "PORT": str(port), "GUNICORN_LOG_LEVEL": "warning"}
        self.port = port
        self.process: subprocess.Popen | None = None

    def manage(self, *args: str) -> str:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=True,
                              capture_output=True, text=True).stdout

    def start(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "ocr_project/gunicorn.conf.py",
                                         "ocr_project.wsgi"], cwd=ROOT, env=self.env, start_new_session=True)
        if wait_until_ready(self.port, 60):
            return
        self.stop()
        raise SystemExit("the service did not become ready in 60 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def model_variant(source: Path, out: Path, version: str) -> Path:
    """The shipped model's weights under another version (what a retrain would register)."""
    import onnx

    proto = onnx.load(str(source))
    for prop in proto.metadata_props:
        if prop.key == "version":
            prop.value = version
    onnx.save(proto, str(out))
    return out


def soak(args) -> dict:
    import psycopg

    admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=5)
    name = f"ocr_soak_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    var = ROOT / "var" / "soak"
    if var.exists():
        import shutil

        shutil.rmtree(var)
    service = Service(f"{POSTGRES_URL.rsplit('/', 1)[0]}/{name}", args.port, args.workers, args.threads, var)
    images = folder_lines(args.data, args.images) if args.data else rendered_lines(args.images)
    try:
        service.manage("migrate", "--noinput", "-v", "0")
        token = service.manage("create_api_token", "soak").strip()
        variant = model_variant(ROOT / "models/arabic-crnn-v2-int8.onnx", var / "soak-variant.onnx", "soak-2")
        service.start()
        return drive(args, service, token, images, variant, admin, name)
    finally:
        service.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def drive(args, service: Service, token: str, images: list[bytes], variant: Path, admin, db_name: str) -> dict:
    lock = threading.Lock()
    samples: list[tuple[float, float]] = []  # (seconds since start, latency ms)
    errors: dict[str, int] = {}
    retried = [0]
    versions: dict[str, int] = {}
    sent_contents: list[bytes] = []
    counter = iter(range(10**9))
    began = time.monotonic()
    deadline = began + args.seconds
    events: dict[str, float] = {}
    peak_connections = [0]

    def post(connection, body, content_type):
        connection.request("POST", "/api/v1/recognitions/", body,
                           {"Authorization": f"Token {token}", "Content-Type": content_type})
        response = connection.getresponse()
        return response.status, response.read()

    def client(seed: int):
        rng = random.Random(seed)
        connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
        while time.monotonic() < deadline:
            with lock:
                resend = sent_contents and rng.random() < 0.1
                data = rng.choice(sent_contents[-50:]) if resend else None
            if data is None:
                n = next(counter)
                data = unique_png(images[n % len(images)], n)
                with lock:
                    sent_contents.append(data)
            body, content_type = multipart("image", [data])
            started = time.perf_counter()
            try:
                try:
                    status, payload = post(connection, body, content_type)
                except (OSError, http.client.HTTPException):
                    # the worker holding this connection died (or closed it): retry once, as the client does
                    connection.close()
                    connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
                    with lock:
                        retried[0] += 1
                    status, payload = post(connection, body, content_type)
            except (OSError, http.client.HTTPException) as exc:
                with lock:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", args.port, timeout=60)
                continue
            elapsed = 1000 * (time.perf_counter() - started)
            with lock:
                if status in (200, 201):
                    samples.append((time.monotonic() - began, elapsed))
                    version = json.loads(payload)["model"]["version"]
                    versions[version] = versions.get(version, 0) + 1
                else:
                    errors[str(status)] = errors.get(str(status), 0) + 1

    def chaos():
        time.sleep(args.seconds / 3)
        workers = children(service.process.pid)
        if workers:
            os.kill(workers[0], signal.SIGKILL)
            events["worker_killed_at_s"] = round(time.monotonic() - began, 1)
        time.sleep(max(0.0, began + args.seconds / 2 - time.monotonic()))
        service.manage("register_model", str(variant), "--activate", "--force")
        events["model_switched_at_s"] = round(time.monotonic() - began, 1)

    def watch_connections():
        while time.monotonic() < deadline:
            count = admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [db_name]).fetchone()[0]
            peak_connections[0] = max(peak_connections[0], count)
            time.sleep(0.5)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    threads += [threading.Thread(target=chaos), threading.Thread(target=watch_connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - began
    storage = subprocess.run([sys.executable, "manage.py", "check_storage", "--min-age", "0"], cwd=ROOT,
                             env=service.env, capture_output=True, text=True)
    recognitions = int(subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-v", "0", "-c",
         "from ocr_app.models import Recognition; print(Recognition.objects.count())"],
        cwd=ROOT, env=service.env, capture_output=True, text=True, check=True).stdout.split()[-1])
    latencies = np.array([ms for _, ms in samples]) if samples else np.array([float("nan")])
    return {
        "clients": args.clients, "workers": args.workers, "threads": args.threads, "seconds": round(wall, 1),
        "requests": len(samples), "requests_per_s": round(len(samples) / wall, 1),
        "errors": sum(errors.values()), "errors_by_kind": errors, "retried_after_worker_kill": retried[0],
        "p50_ms": round(float(np.percentile(latencies, 50)), 1),
        "p99_ms": round(float(np.percentile(latencies, 99)), 1),
        "max_ms": round(float(np.max(latencies)), 1),
        "answers_by_model_version": versions, **events,
        "peak_database_connections": peak_connections[0],
        "stored_recognitions": recognitions,
        "every_recognition_has_its_file": "0 rows without a file" in storage.stdout,
        "check_storage": storage.stdout.strip().splitlines()[0] if storage.stdout.strip() else storage.stderr[-300:],
        "samples": [(round(t, 3), round(ms, 1)) for t, ms in samples],
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, ms = zip(*result["samples"]) if result["samples"] else ((), ())
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.scatter(t, ms, s=2, alpha=0.4)
    for key, label in (("worker_killed_at_s", "worker killed"), ("model_switched_at_s", "model switched")):
        if key in result:
            ax.axvline(result[key], color="red" if "killed" in key else "green", linestyle="--", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("seconds into the soak")
    ax.set_ylabel("request latency (ms)")
    ax.set_title(f"soak: {result['clients']} clients, {result['requests']} requests, {result['errors']} errors, "
                 f"p99 {result['p99_ms']} ms")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--images", type=int, default=60, help="distinct line images to start from")
    parser.add_argument("--data", help="a line folder to take PNGs from (default: lines rendered here)")
    parser.add_argument("--out", default=str(RESULTS / "soak.json"))
    args = parser.parse_args(argv)
    result = soak(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    plot(result, out.with_suffix(".png"))
    summary = {k: v for k, v in result.items() if k != "samples"}
    out.write_text(json.dumps({"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M:%S"), **summary},
                              indent=1), encoding="utf-8")
    print(f"\n{'requests':>8} {'req/s':>6} {'errors':>6} {'retried':>7} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'peak conns':>10} {'files ok':>8}")
    print(f"{summary['requests']:>8} {summary['requests_per_s']:>6} {summary['errors']:>6} "
          f"{summary['retried_after_worker_kill']:>7} {summary['p50_ms']:>7} {summary['p99_ms']:>7} "
          f"{summary['max_ms']:>7} {summary['peak_database_connections']:>10} "
          f"{str(summary['every_recognition_has_its_file']):>8}")
    print(f"answers by model version: {summary['answers_by_model_version']}; worker killed at "
          f"{summary.get('worker_killed_at_s')} s, model switched at {summary.get('model_switched_at_s')} s; "
          f"{summary['stored_recognitions']} recognitions stored; {summary['check_storage']}")
    print(f"wrote {out} and {out.with_suffix('.png')}", file=sys.stderr)
    ok = summary["errors"] == 0 and summary["every_recognition_has_its_file"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
