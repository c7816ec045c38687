"""gunicorn settings for `make serve` and production (`gunicorn -c ocr_project/gunicorn.conf.py ocr_project.wsgi`).

One worker per core, a few threads each sharing the worker's model session
(README, "Production"). Threads are a fixed pool, so a worker holds at most
``threads`` database connections: with DATABASE_URL on PostgreSQL the service
uses at most workers x threads connections (plus one per worker for a moment
at start).
"""

import os

bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("GUNICORN_WORKERS", os.cpu_count() or 2))
threads = int(os.environ.get("GUNICORN_THREADS", 4))
worker_class = "gthread"
# A batch of 32 lines takes well under a second; a request still running after this is stuck.
# The reverse proxy's read timeout (README's nginx block) is a little longer.
timeout = int(os.environ.get("GUNICORN_TIMEOUT", 60))
graceful_timeout = 30
keepalive = 5
# Requests have finished their work before a worker is replaced (memory growth bounded).
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", 0))
max_requests_jitter = max_requests // 10
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# X-Forwarded-For/-Proto are believed only from these addresses (the reverse proxy).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

# What gunicorn refuses itself (a URI or headers over its limits, a malformed request) is answered in the API's
# JSON error shape, not gunicorn's HTML page.
from ocr_project.gunicorn_errors import install as _json_errors  # noqa: E402

_json_errors()
