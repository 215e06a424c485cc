# Each target bootstraps .venv from scratch when needed; python3 and make are all we assume.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-lowest lint typecheck bench bench-peers clean sim soak

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/heliosd demo --state-dir ./var

# make sim SIM_FLAGS="--read-only --clock-offset-ms 3000": flags as heliosd sim --help lists
sim: $(STAMP)
	$(VENV)/bin/heliosd sim --port 8765 $(SIM_FLAGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check heliosd tests plugins $(wildcard bench)
	$(VENV)/bin/ruff format --check heliosd tests plugins $(wildcard bench)

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Two workers (pytest-xdist): the suite's real processes mostly wait on sockets, so two
# workers on CI's two cores halve its time. TEST_WORKERS=0 runs it in one process.
TEST_WORKERS ?= 2
test: $(STAMP)
	$(VENV)/bin/ruff check heliosd tests plugins $(wildcard bench)
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS)

# The suite against the lowest version of every runtime dependency pyproject.toml allows
# (.ci/lowest.py pins each floor), in a venv of its own: a floor nobody installs is a guess.
# About as long as `make test`; not in CI's 10-minute budget beside it, so run it before a
# release and whenever a floor moves (docs/operations.md, "Upgrading").
LOWEST := .venv-lowest
test-lowest:
	test -x $(LOWEST)/bin/python || $(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/python -m pip install --quiet --upgrade pip
	$(PYTHON) .ci/lowest.py > $(LOWEST)/constraints.txt
	$(LOWEST)/bin/python -m pip install --quiet -r $(LOWEST)/constraints.txt \
		-c $(LOWEST)/constraints.txt -e '.[dev]'
	$(LOWEST)/bin/pytest -q -p no:cacheprovider -n $(TEST_WORKERS)

# The long interleaving search (tests/interleavings): fresh seeds against a real daemon and
# the simulator until SOAK_MINUTES have passed; prints each seed, its steps and the invariant
# checks passed. `make soak SOAK_MINUTES=5 SOAK_SEED=7` for a shorter run from another seed.
SOAK_MINUTES ?= 20
SOAK_SEED ?= $(shell date +%s)
soak: $(STAMP)
	HELIOSD_SOAK_MINUTES=$(SOAK_MINUTES) HELIOSD_SEED=$(SOAK_SEED) $(VENV)/bin/pytest -q -s -rxX \
		-p no:cacheprovider tests/interleavings/test_search.py::test_soak

# Each benchmark prints one JSON line of figures (see bench/README.md); a failing one fails
# the target after the others have run.
BENCHES := bench/risk_path.py bench/control.py bench/fills.py bench/emergency_stop.py \
	bench/drawdown_stop.py bench/monitor_pass.py bench/startup.py bench/dashboard.py \
	bench/refresh_cost.py

bench: $(STAMP)
	@status=0; for b in $(BENCHES); do $(PY) $$b || { echo "$$b failed" >&2; status=1; }; done; \
	exit $$status

# NautilusTrader in its own venv (it pins numpy/pandas/pyarrow we do not want in ours), timed on
# the same order stream in the same run. If it cannot be installed, risk_path still runs and its
# JSON says why the peer is missing.
PEERS := bench/.peers-venv
bench-peers: $(STAMP)
	test -x $(PEERS)/bin/python || $(PYTHON) -m venv $(PEERS)
	$(PEERS)/bin/python -m pip install --quiet nautilus_trader \
		|| echo "bench-peers: nautilus_trader could not be installed for $$($(PEERS)/bin/python --version); no peer figures" >&2
	$(PY) bench/risk_path.py --peer $(PEERS)/bin/python

clean:
	rm -rf $(VENV) $(LOWEST) var .pytest_cache .mypy_cache .ruff_cache
