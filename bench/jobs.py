"""Books as jobs on Celery: pages per minute with 1 and 2 worker processes, queue overhead, memory.

    python -m bench.jobs                       # 50 rendered book pages, Redis 127.0.0.1:6379/13
    python -m bench.jobs --pages 16 --workers 1 2 --broker amqp://guest:guest@127.0.0.1:5672//

For each worker count N: a fresh database (SQLite in a temporary folder, or
``--database-url``), N ``celery worker --concurrency 1`` processes started and
warm (model loaded), then one job of ``--pages`` rendered book pages
(``tests/page_rendering.py``: header, heading, 16 justified lines, footnotes;
1700x2400 px, about 300 dpi) submitted through ``ocr_app.jobs.services.create_job``
and timed from the database's own timestamps:

- pages per minute: pages / (last page finished - first page started);
- time from submit to the first page done;
- page recognition: each page's own load + layout + recognition (``Page.duration_ms``);
- queue overhead per page: on each worker process, the gap between finishing one
  page and starting its next, less the time spent storing the page's lines
  (``Page.store_ms``): acknowledging, fetching from the broker, dispatching. As
  a share of the page's recognition time (and the whole gap, storing included);
- worker memory: RSS of each worker's pool process (the one holding the model) and
  its main process, after the job.

Prints a table and writes ``bench/results/jobs.json`` and ``jobs.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.machine import RESULTS, machine
from bench.processes import children, rss_mb

ROOT = Path(__file__).resolve().parent.parent


def start_workers(count: int, env: dict, queue: str, logs: Path) -> list[subprocess.Popen]:
    workers = []
    for n in range(count):
        log = logs / f"worker-{n + 1}.log"
        workers.append(subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "ocr_project.celery", "worker", "--concurrency", "1",
             "-n", f"bench{n + 1}-{queue}@%h", "-Q", queue, "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True))
        workers[-1].log = log
    deadline = time.monotonic() + 120
    for worker in workers:
        while b" ready." not in worker.log.read_bytes():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"worker did not start:\n{worker.log.read_text()}")
            time.sleep(0.1)
    time.sleep(1.0)   # the pool process loads the model right after "ready"
    return workers


def stop_workers(workers: list[subprocess.Popen]) -> None:
    import signal

    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)


def measure(job_id: int, submitted: float) -> dict:
    from ocr_app.jobs.models import Job, Page

    job = Job.objects.get(pk=job_id)
    pages = list(Page.objects.filter(job=job).order_by("started_at"))
    first_start = min(p.started_at for p in pages)
    last_finish = max(p.finished_at for p in pages)
    span = (last_finish - first_start).total_seconds()
    recognition = [p.duration_ms for p in pages if p.duration_ms]
    gaps = []
    by_worker: dict[str, list] = {}
    for page in pages:
        by_worker.setdefault(page.processed_by, []).append(page)
    for worker_pages in by_worker.values():
        for previous, following in zip(worker_pages, worker_pages[1:]):
            gaps.append(1000 * (following.started_at - previous.finished_at).total_seconds())
    median_recognition = statistics.median(recognition)
    median_gap = statistics.median(gaps) if gaps else float("nan")
    median_store = statistics.median(p.store_ms for p in pages if p.store_ms is not None)
    return {
        "status": job.status,
        "pages": len(pages),
        "pages_done": sum(p.status == "done" for p in pages),
        "lines": sum(p.line_count for p in pages),
        "pages_per_minute": round(60 * len(pages) / span, 2),
        "submit_to_first_page_s": round(min(p.finished_at for p in pages).timestamp() - submitted, 2),
        "submit_to_done_s": round(job.finished_at.timestamp() - submitted, 2),
        "page_recognition_ms_median": round(median_recognition, 1),
        "gap_between_pages_ms_median": round(median_gap, 1),
        "store_lines_ms_median": round(median_store, 1),
        "queue_gap_ms_median": round(median_gap - median_store, 1),
        "queue_overhead_share": round((median_gap - median_store) / median_recognition, 4) if gaps else None,
        "gap_share": round(median_gap / median_recognition, 4) if gaps else None,
        "pages_per_worker_process": sorted(len(v) for v in by_worker.values()),
    }


def run(count: int, args, pages_tiff: bytes, base_env: dict) -> dict:
    from django.contrib.auth.models import User

    from ocr_app import registry
    from ocr_app.jobs import services

    queue = f"bench-{uuid.uuid4().hex[:8]}"
    env = {**base_env, "OCR_JOB_QUEUE": queue}
    os.environ["OCR_JOB_QUEUE"] = queue
    from django.conf import settings

    settings.OCR_JOB_QUEUE = queue
    registry.register_default_model()
    with tempfile.TemporaryDirectory() as logs:
        workers = start_workers(count, env, queue, Path(logs))
        try:
            user, _ = User.objects.get_or_create(username="bench")
            submitted = time.time()
            job = services.create_job(user, [("book.tif", pages_tiff)], name=f"bench-{count}")
            submit_s = time.time() - submitted
            deadline = time.monotonic() + args.timeout
            while True:
                job.refresh_from_db()
                if job.status not in ("queued", "running"):
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"job not done after {args.timeout} s")
                time.sleep(0.5)
            result = measure(job.pk, submitted)
            result["submit_request_s"] = round(submit_s, 2)
            memory = []
            for worker in workers:
                pool = children(worker.pid)
                memory.append({"main_mb": round(rss_mb(worker.pid), 1),
                               "pool_mb": [round(rss_mb(pid), 1) for pid in pool]})
            result["worker_memory"] = memory
        finally:
            stop_workers(workers)
            _forget_queue(args.broker, queue)
    result["workers"] = count
    return result


def _forget_queue(broker: str, queue: str) -> None:
    from kombu import Connection

    try:
        with Connection(broker) as connection:
            connection.default_channel.queue_delete(queue)
            if broker.startswith("amqp"):
                connection.default_channel.exchange_delete(queue)
        if broker.startswith("redis"):   # kombu's binding keys outlive the queue
            import redis

            client = redis.Redis.from_url(broker)
            for key in client.scan_iter(f"*{queue}*"):
                client.delete(key)
    except Exception as exc:   # a leftover empty queue is harmless; say so and go on
        print(f"could not delete queue {queue}: {exc}", file=sys.stderr)


def book_pages(count: int) -> bytes:
    import io

    from PIL import Image

    from tests.conftest import CORPUS_LINES
    from tests.page_rendering import PageSpec, render_page

    words = " ".join(CORPUS_LINES).split()
    frames = [Image.fromarray(render_page(PageSpec(seed=n, noise=0.02), words[n * 53:] + words).image)
              for n in range(count)]
    out = io.BytesIO()
    frames[0].save(out, format="TIFF", save_all=True, append_images=frames[1:], compression="tiff_lzw", dpi=(300, 300))
    return out.getvalue()


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    labels = [f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}" for r in results]
    left.bar(labels, [r["pages_per_minute"] for r in results], color="#4a7")
    left.set_ylabel("pages per minute")
    left.set_title("throughput")
    right.bar(labels, [100 * (r["queue_overhead_share"] or 0) for r in results], color="#a74")
    right.axhline(5, color="grey", linestyle="--", label="target 5%")
    right.set_ylabel("% of a page's recognition time")
    right.set_title("queue overhead per page")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.jobs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker process counts to compare")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/13")
    parser.add_argument("--database-url", help="default: a fresh SQLite file in a temporary folder")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per job at most")
    parser.add_argument("--note", default="", help="what else the machine was doing")
    parser.add_argument("--out", type=Path, default=RESULTS / "jobs.json")
    args = parser.parse_args(argv)

    scratch = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    base_env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ocr_project.settings", "OCR_VAR_DIR": str(scratch),
                "MEDIA_ROOT": str(scratch / "media"), "CELERY_BROKER_URL": args.broker,
                "DATABASE_URL": args.database_url or f"sqlite:///{scratch / 'db.sqlite3'}",
                "PYTHONPATH": str(ROOT), "MALLOC_ARENA_MAX": "2", "OCR_JOB_RUNNER": "0"}
    os.environ.update(base_env)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    print(f"rendering {args.pages} pages ...", file=sys.stderr)
    pages_tiff = book_pages(args.pages)
    results = []
    for count in args.workers:
        print(f"{count} worker process(es) ...", file=sys.stderr)
        results.append(run(count, args, pages_tiff, base_env))

    print(f"\n{args.pages} pages (1700x2400, ~20 lines each), broker {args.broker.split('@')[-1]}")
    print("| workers | pages/min | speed-up | submit -> first page | page recognition (median) "
          "| storing lines | queue (broker) | queue overhead | gap incl. storing | pool RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        pool = [mb for w in r["worker_memory"] for mb in w["pool_mb"]]
        r["speedup_vs_first"] = round(r["pages_per_minute"] / results[0]["pages_per_minute"], 2)
        print(f"| {r['workers']} | {r['pages_per_minute']} | {r['speedup_vs_first']}x | {r['submit_to_first_page_s']} s "
              f"| {r['page_recognition_ms_median']} ms | {r['store_lines_ms_median']} ms "
              f"| {r['queue_gap_ms_median']} ms | {100 * (r['queue_overhead_share'] or 0):.1f}% "
              f"| {100 * (r['gap_share'] or 0):.1f}% | {max(pool) if pool else 'n/a'} MB |")
    report = {"machine": machine(), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
              "note": args.note, "pages": args.pages, "broker": args.broker.split("@")[-1],
              "database": "sqlite" if not args.database_url else args.database_url.split("://")[0],
              "load_average_at_end": os.getloadavg(), "results": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    plot(results, args.out.with_suffix(".png"))
    print(f"\nwrote {args.out} and {args.out.with_suffix('.png')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
