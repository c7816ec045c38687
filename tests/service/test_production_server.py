"""Issue 11, item 6: what `make serve` runs (gunicorn) keeps PostgreSQL connections bounded; proxy settings."""

import json
import os
import subprocess
import sys
import threading
import uuid

import pytest

from tests.rendering import png_bytes, render_line
from tests.service.server_process import ROOT, ServerProcess

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def test_make_serve_runs_gunicorn_and_make_dev_runs_runserver():
    serve = subprocess.run(["make", "-n", "serve"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    dev = subprocess.run(["make", "-n", "dev"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert "gunicorn -c ocr_project/gunicorn.conf.py ocr_project.wsgi" in serve and "runserver" not in serve
    assert "runserver" in dev


@pytest.fixture
def scratch_postgres():
    psycopg = pytest.importorskip("psycopg")
    try:
        admin = psycopg.connect(POSTGRES_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    name = f"ocr_conn_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}", name, admin
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.mark.slow
def test_gunicorn_holds_at_most_workers_times_threads_connections(tmp_path, model_file, scratch_postgres):
    from tests.service.test_concurrency_and_storage import post_image

    url, name, admin = scratch_postgres
    server = ServerProcess(tmp_path / "var", model_file, workers=2, threads=4, database_url=url)
    token = server.prepare()
    images = [png_bytes(render_line(f"سنة {i}")) for i in range(8)]
    server.start()
    peak, errors, lock = [0], [], threading.Lock()

    def count() -> int:
        return admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]).fetchone()[0]

    def client(k):
        for i in range(25):
            try:
                status, _ = post_image(server.url, token, images[(k + i) % len(images)])
                assert status in (200, 201), status
            except Exception as exc:  # reported below
                with lock:
                    errors.append(repr(exc))
            with lock:
                peak[0] = max(peak[0], count())

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        after = count()
    finally:
        server.kill()
    assert errors == []
    assert peak[0] <= 2 * 4 + 2, peak[0]  # runserver reached one per request thread (99 and refused)
    assert after <= 2 * 4


def _settings_under(env: dict) -> dict:
    code = ("import django, json; django.setup(); from django.conf import settings as s; print(json.dumps({"
            "'proxy': s.SECURE_PROXY_SSL_HEADER, 'host': s.USE_X_FORWARDED_HOST, 'cookie': s.SESSION_COOKIE_SECURE,"
            "'csrf': s.CSRF_COOKIE_SECURE, 'hsts': s.SECURE_HSTS_SECONDS}))")
    clean = {k: v for k, v in os.environ.items() if k not in {"TRUST_X_FORWARDED_PROTO", "USE_X_FORWARDED_HOST",
                                                             "SECURE_COOKIES", "SECURE_HSTS_SECONDS"}}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**clean, "DJANGO_SETTINGS_MODULE": "ocr_project.settings", **env})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_forwarded_headers_are_trusted_only_when_told():
    assert _settings_under({}) == {"proxy": None, "host": False, "cookie": False, "csrf": False, "hsts": 0}
    told = _settings_under({"TRUST_X_FORWARDED_PROTO": "1", "USE_X_FORWARDED_HOST": "1", "SECURE_COOKIES": "1",
                            "SECURE_HSTS_SECONDS": "31536000"})
    assert told == {"proxy": ["HTTP_X_FORWARDED_PROTO", "https"], "host": True, "cookie": True, "csrf": True,
                    "hsts": 31536000}


@pytest.mark.django_db
def test_a_forwarded_scheme_counts_only_with_the_setting(client, settings):
    settings.ALLOWED_HOSTS = ["ocr.example.org", "testserver"]
    headers = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "ocr.example.org"}
    docs = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json", **headers)
    assert docs.wsgi_request.scheme == "http" and docs.wsgi_request.get_host() == "testserver"
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.USE_X_FORWARDED_HOST = True
    docs = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json", **headers)
    assert docs.wsgi_request.scheme == "https" and docs.wsgi_request.get_host() == "ocr.example.org"


def test_every_path_the_service_writes_follows_ocr_var_dir(tmp_path):
    """OCR_ADAPT_DIR's default was BASE_DIR/var/adaptations whatever OCR_VAR_DIR said: adapted models landed in
    the project folder of a deployment that keeps its state elsewhere."""
    code = ("import django, json; django.setup(); from django.conf import settings as s; print(json.dumps({"
            "'media': str(s.MEDIA_ROOT), 'static': str(s.STATIC_ROOT), 'db': str(s.DATABASES['default']['NAME']),"
            "'adapt': str(s.OCR_ADAPT_DIR)}))")
    clean = {k: v for k, v in os.environ.items() if k not in {"MEDIA_ROOT", "STATIC_ROOT", "DATABASE_URL",
                                                             "OCR_ADAPT_DIR", "OCR_VAR_DIR"}}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**clean, "DJANGO_SETTINGS_MODULE": "ocr_project.settings", "SECRET_KEY": "x" * 50,
                              "OCR_VAR_DIR": str(tmp_path / "state")})
    paths = json.loads(out.stdout.strip().splitlines()[-1])
    assert paths == {"media": str(tmp_path / "state" / "media"), "static": str(tmp_path / "state" / "static"),
                     "db": str(tmp_path / "state" / "db.sqlite3"), "adapt": str(tmp_path / "state" / "adaptations")}


def _raw_answer(port: int, payload: bytes) -> tuple[int, dict, bytes]:
    """Send bytes as they are (no client library would send these) and read the whole answer."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), headers, body


def test_what_gunicorn_refuses_itself_is_answered_in_the_json_error_shape(tmp_path, model_file):
    """A URI or headers over gunicorn's limits, a bad header name or a NUL in the method never reach Django:
    gunicorn used to answer them with its own HTML page."""
    server = ServerProcess(tmp_path / "var", model_file, workers=1, threads=2)
    server.prepare()
    server.start()
    cases = [
        (b"GET /api/v1/health/?q=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
         431, "headers_too_large"),
        (b"GE\x00T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "bad_request"),
    ]
    try:
        for payload, status, code in cases:
            got, headers, body = _raw_answer(server.port, payload)
            assert (got, headers["content-type"]) == (status, "application/json"), (payload[:40], got, body)
            error = json.loads(body)["error"]
            assert error["code"] == code and error["message"], error
            assert int(headers["content-length"]) == len(body)
    finally:
        server.kill()
