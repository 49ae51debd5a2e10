# ledger: one entry point for setting up, testing, benchmarking and the demo.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: all venv system-deps test lint format demo bench bench-smoke postgres clean

all: test

# torch is pinned to the CPU build that is available offline here; a looser range pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev,torch]'
	touch $(STAMP)

venv: $(STAMP)

# Real components the tests meet: headless Chromium (HTML report), poppler's pdftoppm (PDF), Pango (WeasyPrint).
SYSTEM_PACKAGES := chromium poppler-utils libpango-1.0-0 libpangoft2-1.0-0 fonts-dejavu-core
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# Start the local PostgreSQL cluster when it is installed but down (tests create their own databases).
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { \
	  command -v pg_ctlcluster >/dev/null && ls /etc/postgresql >/dev/null 2>&1 && \
	  pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql | head -1) main start && sleep 2 || true; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: $(STAMP) system-deps postgres lint
	$(PY) -m pytest -n 2 --dist loadgroup -q

demo: $(STAMP)
	$(PY) -m demo

# The commands are timed from this checkout: compile its bytecode first, as installing a wheel does (where
# PYTHONDONTWRITEBYTECODE is set, every start-up would otherwise compile ~50 modules from source).
bench: $(STAMP) system-deps postgres
	$(PY) -m compileall -q ledger cli migrations benchmarks
	$(PY) -m benchmarks

bench-smoke: $(STAMP) postgres
	$(PY) -m benchmarks --smoke

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
