# archzoo: make demo | make test | make bench | make report
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make bench` runs these suites and the vision family's presets; `archzoo bench all` runs every suite (slow on a CPU:
# presets up to 936M parameters).
BENCH_SUITES ?= attention tasks norms
BENCH_ARGS ?=

.PHONY: install demo test bench report clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Install the CPU torch wheel only when no torch is importable: a user's own torch is kept.
$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/archzoo demo

test: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]' || echo "reference packages unavailable: benchmarking ours only"
	for suite in $(BENCH_SUITES); do $(VENV)/bin/archzoo bench $$suite $(BENCH_ARGS) || exit 1; done
	$(VENV)/bin/archzoo bench models --family vision $(BENCH_ARGS)

report: $(STAMP)
	$(VENV)/bin/archzoo report

clean:
	rm -rf $(VENV) runs build src/*.egg-info
