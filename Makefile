# archzoo: make demo | make test | make data | make bench | make report
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# `make bench` runs these suites and the vision family's presets; `archzoo bench all` runs every suite (slow on a CPU:
# presets up to 936M parameters).
BENCH_SUITES ?= attention tasks norms
BENCH_ARGS ?=
# Fashion-MNIST as Debian's package `dataset-fashion-mnist` installs it (the four IDX .gz files).
FASHION_MNIST_DIR := /usr/share/datasets/fashion-mnist
FASHION_MNIST_HOW := sudo apt-get install dataset-fashion-mnist (Debian/Ubuntu), or archzoo data fetch fashion-mnist \
	where a network exists, or put its four IDX files in a folder and pass --data-dir FOLDER

.PHONY: install data demo test test-reference bench bench-cuda report clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Install the CPU torch wheel only when no torch is importable: a user's own torch is kept.
$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Fashion-MNIST for the demo: found where archzoo looks (ARCHZOO_DATA_DIR/fashion-mnist only, when set; else
# Debian's folder or the cache of `archzoo data fetch`), or installed from Debian's package where apt-get runs as
# root, or one line on how to get it and a non-zero exit. `make test` needs no data set.
FASHION_MNIST_CACHE = $${XDG_CACHE_HOME:-$$HOME/.cache}/archzoo/fashion-mnist
GET_FASHION_MNIST = if [ -n "$$ARCHZOO_DATA_DIR" ]; then \
		if [ -f "$$ARCHZOO_DATA_DIR/fashion-mnist/train-images-idx3-ubyte.gz" ]; then \
			echo "make data: Fashion-MNIST is in $$ARCHZOO_DATA_DIR/fashion-mnist"; \
		else \
			echo "make data: ARCHZOO_DATA_DIR is set, so Fashion-MNIST is looked for in $$ARCHZOO_DATA_DIR/fashion-mnist only; put its four IDX files there (archzoo data fetch fashion-mnist does), or unset ARCHZOO_DATA_DIR" >&2; exit 1; \
		fi; \
	elif [ -f $(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz ] || [ -f "$(FASHION_MNIST_CACHE)/train-images-idx3-ubyte.gz" ]; then \
		echo "make data: Fashion-MNIST is present (archzoo data where fashion-mnist)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "make data: installing Debian's dataset-fashion-mnist into $(FASHION_MNIST_DIR)"; \
		(apt-get update -q && apt-get install -y -q dataset-fashion-mnist) \
			|| { echo "make data: apt-get could not install dataset-fashion-mnist; get it with: $(FASHION_MNIST_HOW)" >&2; exit 1; }; \
	else \
		echo "make data: Fashion-MNIST is missing; get it with: $(FASHION_MNIST_HOW)" >&2; exit 1; \
	fi

data:
	@$(GET_FASHION_MNIST)

# Without the data, the demo still runs, on digits, and every such result says so.
demo: $(STAMP)
	@($(GET_FASHION_MNIST)) \
		|| echo "make demo: continuing without Fashion-MNIST: its claims run on digits, and their results say so" >&2
	$(VENV)/bin/archzoo demo

test: $(STAMP)
	$(VENV)/bin/ruff check src tests
	$(PY) -m pytest

# The reference tests: ours against the public implementations of the [bench] extra after copying weights (Hugging
# Face ViT/BiT/Longformer/BigBird/Reformer, performer-pytorch, linformer, linear-attention-transformer). Here a
# missing reference fails instead of skipping, except timm's (it needs a CUDA torch through torchvision).
test-reference: $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	ARCHZOO_REFERENCES=required $(PY) -m pytest -m reference -rs

bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]' || echo "reference packages unavailable: benchmarking ours only"
	for suite in $(BENCH_SUITES); do $(VENV)/bin/archzoo bench $$suite $(BENCH_ARGS) || exit 1; done
	$(VENV)/bin/archzoo bench models --family vision $(BENCH_ARGS)

# On a machine with a GPU and a CUDA build of torch (TORCH=torch): the bf16 sections, each beside the CPU ones:
# every attention with full attention against SDPA's flash kernel, and ViT training throughput with its MFU.
bench-cuda: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]' || echo "reference packages unavailable: benchmarking ours only"
	$(VENV)/bin/archzoo bench attention --device cuda --dtype bfloat16 $(BENCH_ARGS)
	$(VENV)/bin/archzoo bench models --family vision --pattern 'vit_b16|vit_l16' --device cuda --dtype bfloat16 \
		--batch-size 64 $(BENCH_ARGS)

report: $(STAMP)
	$(VENV)/bin/archzoo report

clean:
	rm -rf $(VENV) runs build src/*.egg-info
