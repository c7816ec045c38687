# Two commands matter (see README): `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1
# PostgreSQL for the second test pass (skipped when it does not answer).
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: serve dev worker worker-train test install-serve install-dev system-deps bench-deps bench lint clean help

help:
	@echo "make serve   install the serving requirements and start the service (gunicorn) on $(HOST):$(PORT)"
	@echo "make dev     the same with Django's development server (auto-reload)"
	@echo "make test    install training + test requirements and run the whole suite"
	@echo "make worker  run a Celery worker for jobs (CELERY_BROKER_URL, default Redis on 127.0.0.1)"
	@echo "make worker-train  run a Celery worker for book adaptations (the training queue)"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.serve-installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-train.txt requirements-dev.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	# the project itself, editable and without re-resolving the pinned requirements: the `arabic-ocr` command
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.serve-installed

install-serve: $(VENV)/.serve-installed
install-dev: $(VENV)/.dev-installed

system-deps:
	scripts/install-system-deps.sh

bench-deps: system-deps
	scripts/install-system-deps.sh --bench

# What production runs: gunicorn (ocr_project/gunicorn.conf.py: one worker per core, 4 threads each),
# WhiteNoise for static files; SQLite unless DATABASE_URL says otherwise.
serve: install-serve
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	HOST=$(HOST) PORT=$(PORT) MALLOC_ARENA_MAX=2 $(PY) -m gunicorn -c ocr_project/gunicorn.conf.py ocr_project.wsgi

# Django's development server (one thread per request, so no persistent database connections).
dev: install-serve
	$(PY) manage.py migrate --noinput
	DEBUG=$${DEBUG:-1} DATABASE_CONN_MAX_AGE=0 $(PY) manage.py runserver $(HOST):$(PORT)

# A Celery worker for jobs: one process per core, each loads the model once. The web process must
# be started with the same CELERY_BROKER_URL (without one, `make serve` runs jobs itself).
CELERY_BROKER_URL ?= redis://127.0.0.1:6379/0
WORKER_CONCURRENCY ?= $(shell nproc 2>/dev/null || echo 2)
worker: install-serve
	$(PY) manage.py migrate --noinput
	CELERY_BROKER_URL=$(CELERY_BROKER_URL) MALLOC_ARENA_MAX=2 $(VENV)/bin/celery -A ocr_project.celery worker \
		--concurrency $(WORKER_CONCURRENCY) --loglevel INFO

# A Celery worker for book adaptations (the `training` queue): it needs the training requirements,
# and trains one book at a time (training uses every core).
worker-train: install-dev
	$(PY) manage.py migrate --noinput
	CELERY_BROKER_URL=$(CELERY_BROKER_URL) MALLOC_ARENA_MAX=2 $(VENV)/bin/celery -A ocr_project.celery worker \
		--queues $${OCR_TRAINING_QUEUE:-training} --concurrency 1 --hostname train@%h --loglevel INFO

test: install-dev system-deps
	$(PY) -m pytest
	@if $(PY) -c "import psycopg,sys; psycopg.connect('$(TEST_POSTGRES_URL)', connect_timeout=3).close()" 2>/dev/null; then \
		echo "== again on PostgreSQL ($(TEST_POSTGRES_URL)): the database-backed tests =="; \
		DATABASE_URL=$(TEST_POSTGRES_URL) $(PY) -m pytest -m "not slow and not browser" tests/service; \
	else \
		echo "PostgreSQL at $(TEST_POSTGRES_URL) does not answer: second pass skipped"; \
	fi

lint: install-dev
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache

# Benchmarks (not tests): see bench/README.md. DATA defaults to the shared real lines.
DATA ?= ../shared/datasets/openiti-gs
bench: install-dev bench-deps
	$(PY) -m bench.recognizer $(DATA) --sources IbnQutayba --max-lines 300
	$(PY) -m bench.service $(DATA) --start-server
