"""The service as a real subprocess (gunicorn on a scratch SQLite database), for kill tests."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def wait_until_ready(port: int, timeout: float = 60) -> bool:
    """Poll a local server's /readyz until it answers 200 (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False

class ServerProcess:
    def __init__(self, var_dir: Path, model: Path, workers: int = 1, threads: int = 4,
                 database_url: str | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers, self.threads = workers, threads
        self.env = {**os.environ, "OCR_VAR_DIR": str(var_dir), "MEDIA_ROOT": str(var_dir / "media"),
                    "OCR_DEFAULT_MODEL": str(model), "OCR_THROTTLE_RATE": "100000/min",
                    "DJANGO_SETTINGS_MODULE": "ocr_project.settings"}
        self.env.pop("DATABASE_URL", None)  # its own SQLite database under var_dir, unless given one
        if database_url:
            self.env["DATABASE_URL"] = database_url
        self.process: subprocess.Popen | None = None

    def manage(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, check=check,
                              capture_output=True, text=True, timeout=120)

    def prepare(self) -> str:
        self.manage("migrate", "--noinput", "-v", "0")
        return self.manage("create_api_token", "killer").stdout.strip()

    def start(self, timeout: float = 60) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "ocr_project/gunicorn.conf.py", "ocr_project.wsgi",
             "--workers", str(self.workers),
             "--threads", str(self.threads), "--bind", f"127.0.0.1:{self.port}", "--log-level", "warning"],
            cwd=ROOT, env=self.env, start_new_session=True)
        if wait_until_ready(self.port, timeout):
            return
        self.kill()
        raise RuntimeError("the server did not get ready")

    def kill(self) -> None:
        """SIGKILL the whole server (master and workers): nothing gets to clean up."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None
