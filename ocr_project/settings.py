"""Settings, all from the environment (see README, "Configuration").

Defaults give a working service on a fresh clone: SQLite under ``var/``, the
shipped model in ``models/``, DEBUG off.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("OCR_VAR_DIR", BASE_DIR / "var"))


def env_bool(name: str, default: bool = False) -> bool:
    return os.environ.get(name, str(default)).strip().lower() in ("1", "true", "yes", "on")


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _secret_key() -> str:
    """SECRET_KEY from the environment, else one generated once and kept in var/."""
    if os.environ.get("SECRET_KEY"):
        return os.environ["SECRET_KEY"]
    path = VAR_DIR / "secret-key"
    if not path.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = [h.strip() for h in os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h.strip()]
CSRF_TRUSTED_ORIGINS = [o.strip() for o in os.environ.get("CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()]

# Behind a reverse proxy that ends TLS (README, "Production"). Each is off unless the
# environment says so: a service reached directly must not believe a client's X-Forwarded-*.
if env_bool("TRUST_X_FORWARDED_PROTO"):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env_bool("USE_X_FORWARDED_HOST")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env_bool("SECURE_COOKIES")
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "ocr_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, so that its process_exception sees the view's exception first.
    "ocr_app.middleware.ApiInternalErrorMiddleware",
]

ROOT_URLCONF = "ocr_project.urls"
WSGI_APPLICATION = "ocr_project.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "ocr_app.web.context.navigation",
            ],
        },
    },
]

# Persistent connections pay off only with a fixed pool of threads (gunicorn's gthread
# workers: at most workers x threads connections). runserver starts a thread per
# request, and each would keep its own connection open until PostgreSQL refuses more.
_RUNSERVER = len(sys.argv) > 1 and sys.argv[1] == "runserver"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=0 if _RUNSERVER else env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Several gunicorn workers write to one file. WAL lets readers run beside the
    # writer; IMMEDIATE transactions take the write lock up front, because a
    # read transaction upgraded to write fails at once with "database is locked"
    # instead of waiting out the timeout.
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    })
    # Tests get a file too: an in-memory database is one connection shared by
    # every live-server thread, which breaks under concurrent requests.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-db.sqlite3")}
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", VAR_DIR / "static"))
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # WhiteNoise warns on every start without it
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))
STORAGES = {
    # Content-addressed: a second writer of the same content is harmless (ocr_app.storage).
    "default": {"BACKEND": "ocr_app.storage.ContentAddressedStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
if os.environ.get("OCR_MEDIA_S3_BUCKET"):
    # Several machines (web and workers) share one media store: S3 or any S3-compatible server
    # (MinIO, Ceph, ...) through django-storages. Credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.
    STORAGES["default"] = {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": os.environ["OCR_MEDIA_S3_BUCKET"],
        "endpoint_url": os.environ.get("OCR_MEDIA_S3_ENDPOINT") or None,
        "region_name": os.environ.get("OCR_MEDIA_S3_REGION") or None,
        "location": os.environ.get("OCR_MEDIA_S3_PREFIX", ""),
        "default_acl": "private",
        "querystring_auth": True,
        "file_overwrite": True,   # names are content hashes: the same name is the same bytes
    }}

# -- the recogniser -------------------------------------------------------------
OCR_MODEL_DIR = Path(os.environ.get("OCR_MODEL_DIR", BASE_DIR / "models"))
# The int8 twin of the shipped model: the same CER on the held-out book, about twice as fast.
OCR_DEFAULT_MODEL = Path(os.environ.get("OCR_DEFAULT_MODEL", OCR_MODEL_DIR / "arabic-crnn-v2-int8.onnx"))
OCR_THREADS = env_int("OCR_THREADS", 1)                  # onnxruntime threads per worker
# A character language model file (`python -m training.char_lm`, e.g. models/arabic-char-lm.npz): lines are then
# decoded by a beam search that weighs it (recognition.beam_search). Off (greedy decoding) unless set.
# A relative path is taken from the project folder, as the model defaults are; checked at start-up (system check
# ocr_app.E001, and a log line naming the setting), a file that cannot be used makes requests answer 503.
OCR_LANGUAGE_MODEL = os.environ.get("OCR_LANGUAGE_MODEL", "").strip()
if OCR_LANGUAGE_MODEL and not Path(OCR_LANGUAGE_MODEL).is_absolute():
    OCR_LANGUAGE_MODEL = str(BASE_DIR / OCR_LANGUAGE_MODEL)
OCR_MAX_UPLOAD_BYTES = env_int("OCR_MAX_UPLOAD_BYTES", 10 * 1024 * 1024)
OCR_MAX_PIXELS = env_int("OCR_MAX_PIXELS", 20_000_000)  # decompression-bomb guard
OCR_MAX_LINE_WIDTH = env_int("OCR_MAX_LINE_WIDTH", 4000)  # model pixels, after scaling to the model height
OCR_MIN_LINE_HEIGHT = env_int("OCR_MIN_LINE_HEIGHT", 8)   # source pixels
OCR_MAX_BATCH = env_int("OCR_MAX_BATCH", 32)             # images per batch request
OCR_MODEL_BATCH = env_int("OCR_MODEL_BATCH", 8)          # lines per model run (similar widths together)
OCR_MODEL_CONCURRENCY = env_int("OCR_MODEL_CONCURRENCY", 1)  # model runs at once per worker
OCR_ACTIVE_MODEL_CHECK_SECONDS = float(os.environ.get("OCR_ACTIVE_MODEL_CHECK_SECONDS", 2.0))
OCR_REFERENCE_SET = os.environ.get("OCR_REFERENCE_SET", "")  # lines for the activation quality gate
# -- the review workspace (/review/) ------------------------------------------------
OCR_REVIEW_LEASE_SECONDS = env_int("OCR_REVIEW_LEASE_SECONDS", 300)  # a claimed line frees itself after this
OCR_REVIEW_LOW_CONFIDENCE = float(os.environ.get("OCR_REVIEW_LOW_CONFIDENCE", 0.9))  # characters below: highlighted
# -- books as jobs (/api/v1/jobs/, ocr_app/jobs) ---------------------------------------
# Unset: jobs run in the web process (ocr_app.jobs.runner). Set (redis://..., amqp://...): pages are
# Celery tasks on that broker, run by `make worker` processes on any number of machines.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
OCR_JOB_QUEUE = os.environ.get("OCR_JOB_QUEUE", "ocr-pages")
CELERY_TASK_DEFAULT_QUEUE = OCR_JOB_QUEUE
CELERY_TASK_ACKS_LATE = True                # a page's message is acknowledged once the page is stored
CELERY_TASK_REJECT_ON_WORKER_LOST = True    # a pool process killed mid-page puts the page back at once
CELERY_WORKER_PREFETCH_MULTIPLIER = 1       # pages are long: no process hoards messages others could run
CELERY_TASK_IGNORE_RESULT = True            # progress lives in the database, not a result backend
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Redis redelivers a message whose worker vanished (SIGKILL of the whole worker, a lost machine)
# once it is this many seconds old; it must exceed the longest a page can take. Workers look for
# such messages every OCR_JOB_RESTORE_INTERVAL seconds (kombu's default sweep is every 100 s).
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": env_int("OCR_JOB_VISIBILITY_TIMEOUT", 600),
    "unacked_restore_interval": env_int("OCR_JOB_RESTORE_INTERVAL", 10),
    "unacked_restore_throttle": 1,
}
# One page sent to POST /api/v1/pages/ and read in the request (books go to the jobs API).
OCR_MAX_PAGE_BYTES = env_int("OCR_MAX_PAGE_BYTES", 40 * 1024 * 1024)
OCR_MAX_PAGE_PIXELS = env_int("OCR_MAX_PAGE_PIXELS", 60_000_000)  # a 600-dpi A3 scan
OCR_JOB_MAX_PAGES = env_int("OCR_JOB_MAX_PAGES", 2000)
OCR_JOB_MAX_BYTES = env_int("OCR_JOB_MAX_BYTES", 500 * 1024 * 1024)
OCR_JOB_MAX_PAGE_PIXELS = env_int("OCR_JOB_MAX_PAGE_PIXELS", 60_000_000)  # a 600-dpi A3 scan
OCR_JOB_RETRY_SECONDS = env_int("OCR_JOB_RETRY_SECONDS", 5)
# A page started this many times without finishing (its worker killed each time: a page that takes the process
# down) is failed instead of started again: retried for good, it would take down worker after worker.
OCR_JOB_MAX_STARTS = env_int("OCR_JOB_MAX_STARTS", 5)
OCR_JOB_THREADS = env_int("OCR_JOB_THREADS", 1)            # in-process runner threads per web process
OCR_JOB_LEASE_SECONDS = env_int("OCR_JOB_LEASE_SECONDS", 300)  # in-process: a dead process's page is retaken
OCR_JOB_POLL_SECONDS = float(os.environ.get("OCR_JOB_POLL_SECONDS", 2.0))
# -- book adaptation (ocr_app/books): fine-tuning a model on one book's reviewed lines -------------
OCR_ADAPT_MIN_LINES = env_int("OCR_ADAPT_MIN_LINES", 100)       # reviewed lines a book needs before adapting
OCR_ADAPT_HELDOUT_EVERY = env_int("OCR_ADAPT_HELDOUT_EVERY", 5)  # every Nth reviewed line is held out to measure
OCR_ADAPT_DIR = os.environ.get("OCR_ADAPT_DIR", str(VAR_DIR / "adaptations"))  # runs and adapted models
OCR_ADAPT_ARGS = os.environ.get("OCR_ADAPT_ARGS", "")          # extra `training.adapt` options (e.g. --epochs 6)
OCR_ADAPT_LEASE_SECONDS = env_int("OCR_ADAPT_LEASE_SECONDS", 60)  # a silent adaptation's worker is taken as dead
OCR_TRAINING_QUEUE = os.environ.get("OCR_TRAINING_QUEUE", "training")  # Celery queue of `make worker-train`
CELERY_TASK_ROUTES = {"ocr_app.books.tasks.adapt_book": {"queue": OCR_TRAINING_QUEUE}}
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

# Requests larger than a batch of maximum uploads (or a maximal page) are refused before parsing.
# A page may also come as JSON base64 (4 characters per 3 bytes).
DATA_UPLOAD_MAX_MEMORY_SIZE = max(OCR_MAX_UPLOAD_BYTES * 2, OCR_MAX_PAGE_BYTES * 4 // 3 + 1024 * 1024)
FILE_UPLOAD_MAX_MEMORY_SIZE = OCR_MAX_UPLOAD_BYTES
DATA_UPLOAD_MAX_NUMBER_FILES = OCR_MAX_BATCH + 1

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # DRF's own, with JSON's lone surrogates and repeated keys refused (ocr_app/parsers.py)
    "DEFAULT_PARSER_CLASSES": ["ocr_app.parsers.StrictJSONParser", "rest_framework.parsers.FormParser",
                               "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": os.environ.get("OCR_THROTTLE_RATE", "600/min")},
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": env_int("OCR_PAGE_SIZE", 50),
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "ocr_app.errors.json_exception_handler",
    # An unknown ?format= is a 400 invalid_request, not DRF's 404 (ocr_app/negotiation.py)
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "ocr_app.negotiation.FormatParameterNegotiation",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Arabic text-line OCR",
    "DESCRIPTION": "Recognise printed Arabic text lines; every prediction is stored for review.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Request and response components apart: uploads are documented as binary files
    # (the docs' "Try it out" offers a file picker), not as URIs.
    "COMPONENT_SPLIT_REQUEST": True,
    # Swagger UI from the installed package, not a CDN: the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    if not os.environ.get("REDIS_URL")
    else {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["REDIS_URL"]}
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "ocr_app": {"handlers": ["console"], "level": os.environ.get("OCR_LOG_LEVEL", "INFO")},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
