# Two commands matter (see README): `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
HOST ?= 127.0.0.1
# PostgreSQL for the second test pass (skipped when it does not answer).
TEST_POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/postgres

.PHONY: serve test install-serve install-dev system-deps bench-deps bench lint clean help

help:
	@echo "make serve   install the serving requirements and start the service on $(HOST):$(PORT)"
	@echo "make test    install training + test requirements and run the whole suite"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.serve-installed: requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev-installed: requirements.txt requirements-train.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.serve-installed

install-serve: $(VENV)/.serve-installed
install-dev: $(VENV)/.dev-installed

system-deps:
	scripts/install-system-deps.sh

bench-deps: system-deps
	scripts/install-system-deps.sh --bench

serve: install-serve
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) manage.py runserver $(HOST):$(PORT) --noreload

test: install-dev system-deps
	$(PY) -m pytest
	@if $(PY) -c "import psycopg,sys; psycopg.connect('$(TEST_POSTGRES_URL)', connect_timeout=3).close()" 2>/dev/null; then \
		echo "== again on PostgreSQL ($(TEST_POSTGRES_URL)): the database-backed tests =="; \
		DATABASE_URL=$(TEST_POSTGRES_URL) $(PY) -m pytest -m "not slow" tests/service; \
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
