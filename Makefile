# Each target bootstraps .venv from scratch when needed; python3 and make are all we assume.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench bench-peers clean sim

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/heliosd demo --state-dir ./var

sim: $(STAMP)
	$(VENV)/bin/heliosd sim --port 8765

lint: $(STAMP)
	$(VENV)/bin/ruff check heliosd tests plugins $(wildcard bench)
	$(VENV)/bin/ruff format --check heliosd tests plugins $(wildcard bench)

typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: $(STAMP)
	$(VENV)/bin/ruff check heliosd tests plugins $(wildcard bench)
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider

bench: $(STAMP)
	@for b in bench/risk_path.py bench/control.py bench/fills.py bench/emergency_stop.py bench/startup.py; do \
		[ -f $$b ] && $(PY) $$b || true; done

bench-peers: $(STAMP)
	test -x bench/.peers-venv/bin/python || $(PYTHON) -m venv bench/.peers-venv
	bench/.peers-venv/bin/pip install --quiet nautilus_trader
	$(PY) bench/risk_path.py --peer bench/.peers-venv/bin/python

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
