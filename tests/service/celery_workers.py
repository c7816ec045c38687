"""Real ``celery worker`` processes for the tests, on a real broker.

Redis (127.0.0.1:6379, database 13, or TEST_REDIS_URL) is the broker; RabbitMQ (127.0.0.1:5672)
where a test asks for it. Each test uses its own queue name, so nothing else on
the broker is touched. The workers read the test database and media folder.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")   # a database of your own: TEST_REDIS_URL
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
ROOT = Path(__file__).resolve().parents[2]


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _database_url() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


class Worker:
    def __init__(self, name: str, broker: str, queue: str, settings, log: Path, env: dict | None = None):
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "ocr_project.settings", "DATABASE_URL": _database_url(),
               "MEDIA_ROOT": str(settings.MEDIA_ROOT), "OCR_DEFAULT_MODEL": str(settings.OCR_DEFAULT_MODEL),
               "CELERY_BROKER_URL": broker, "OCR_JOB_QUEUE": queue, "OCR_JOB_VISIBILITY_TIMEOUT": "3",
               "OCR_JOB_RESTORE_INTERVAL": "1", "PYTHONPATH": str(ROOT), **(env or {})}
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "ocr_project.celery", "worker", "--concurrency", "1",
             "-n", f"{name}@%h", "-Q", queue, "--without-gossip", "--without-mingle", "--without-heartbeat",
             "--loglevel", "INFO"],
            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while b" ready." not in self.log.read_bytes():
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL to the worker and its pool processes at once: nothing gets to clean up."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def broker_queue():
    if not answers(6379):
        pytest.skip("no Redis server on 127.0.0.1:6379")
    return f"ocr-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def start_worker(service_settings, broker_queue, tmp_path):
    from ocr_app import registry

    registry.active_version()   # registered at start-up (the `started` fixture), before any worker looks
    workers: list[Worker] = []

    def start(broker: str = REDIS_URL, name: str | None = None, env: dict | None = None) -> Worker:
        service_settings.CELERY_BROKER_URL = broker
        service_settings.OCR_JOB_QUEUE = broker_queue
        worker = Worker(name or f"w{len(workers) + 1}", broker, broker_queue, service_settings,
                        tmp_path / f"worker-{len(workers) + 1}.log", env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()
    if workers:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        for key in [*client.scan_iter(f"*{broker_queue}*"), broker_queue]:
            client.delete(key)
