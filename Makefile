# Driftline: every target sets up what it needs (idempotent; a second run reuses .venv and the jar cache).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
NANNY := .venv-nannyml
NANNY_STAMP := $(NANNY)/.installed
export DRIFTLINE_CACHE ?= $(CURDIR)/.cache
export PYSPARK_PYTHON := $(abspath $(PY))
export PYSPARK_DRIVER_PYTHON := $(abspath $(PY))

.PHONY: demo test bench lint setup clean crosscheck browser

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# NannyML in its own venv, pinned in crosscheck/requirements-nannyml.txt: the benchmark's and crosscheck's other side
$(NANNY_STAMP): crosscheck/requirements-nannyml.txt
	test -x $(NANNY)/bin/python || $(PYTHON) -m venv $(NANNY)
	$(NANNY)/bin/python -m pip install --quiet -r crosscheck/requirements-nannyml.txt
	touch $(NANNY_STAMP)

setup: $(STAMP)
	$(PY) -m monitoring.cli jars

demo: setup
	$(PY) -m monitoring.cli demo --config conf/demo.yaml

# Debian's Chromium for the browser test of the MLflow UI (tests/test_alerting.py); apt needs root or sudo
browser:
	@test -x /usr/bin/chromium || { SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
	  --no-install-recommends chromium fonts-dejavu-core; }

test: setup browser
	$(PY) -m ruff check monitoring jobs tests benchmarks crosscheck
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=12 tests

# `make bench`: every benchmark at full size (hours); `make bench QUICK=1`: the scale benchmark's smoke run
bench: setup $(NANNY_STAMP)
ifdef QUICK
	$(PY) benchmarks/scale.py --quick
else
	$(PY) benchmarks/scale.py $(SCALE_ARGS)
	$(PY) benchmarks/bench.py $(BENCH_ARGS)
	$(PY) benchmarks/backfill.py $(BACKFILL_ARGS)
	$(PY) benchmarks/estimation.py $(ESTIMATION_ARGS)
	$(PY) benchmarks/incremental.py $(INCREMENTAL_ARGS)
endif

# Driftline's univariate drift, data quality, realized performance (compatibility: nannyml), CBPE, DLE and reconstruction error vs NannyML's (NannyML in its own venv, pinned in crosscheck/requirements-nannyml.txt)
crosscheck: setup $(NANNY_STAMP)
	@fail=0; \
	for d in car_loan multiclass car_price car_loan_dq; do \
	  $(NANNY)/bin/python crosscheck/nannyml_univariate.py $$d crosscheck/out && \
	  $(PY) crosscheck/compare_univariate.py $$d crosscheck/out || fail=1; done; \
	for d in car_loan multiclass car_price; do \
	  $(NANNY)/bin/python crosscheck/nannyml_realized.py $$d crosscheck/out && \
	  $(PY) crosscheck/compare_realized.py $$d crosscheck/out || fail=1; done; \
	for d in car_loan multiclass; do \
	  $(NANNY)/bin/python crosscheck/nannyml_cbpe.py $$d crosscheck/out && \
	  $(PY) crosscheck/compare_cbpe.py $$d crosscheck/out || fail=1; done; \
	{ $(NANNY)/bin/python crosscheck/nannyml_dle.py car_price crosscheck/out && \
	  $(PY) crosscheck/compare_dle.py car_price crosscheck/out; } || fail=1; \
	{ $(NANNY)/bin/python crosscheck/nannyml_reconstruction.py crosscheck/out && \
	  $(PY) crosscheck/compare_reconstruction.py crosscheck/out; } || fail=1; \
	exit $$fail

lint: setup
	$(PY) -m ruff check monitoring jobs tests benchmarks crosscheck

clean:
	rm -rf data output mlflow.db mlruns spark-warehouse
