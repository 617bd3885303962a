# qllama's everyday commands. The notebooks in nbs/ are the source; qllama/*.py is exported from them.
#   make install     create .venv (if missing) and install torch 2.13 (CPU), then qllama with its dev extra
#   make demo        install, then chat with the embedded SmolLM2 demo model (qllama chat)
#   make export      notebooks -> qllama/*.py, and README.md from nbs/index.ipynb
#   make clean-nbs   strip notebook metadata for git     (nbdev_clean)
#   make test        notebook tests, then pytest tests/  (TRITON_INTERPRET=1: Triton kernels run on the CPU)
#   make docs        the documentation site, into docs/  (tools/build_docs.py; open docs/index.html via a server)
#   make serve-docs  serve docs/ on http://127.0.0.1:8000
#   make check       what CI does, in this venv: bash .ci/run --no-install

SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3
# 2 workers suit the 2-core machines this project runs on; raise it on a bigger one.
N_WORKERS ?= 2
# torch first and pinned: 2.13.0 is the release a CPU build of lies on this project's machines;
# any other version would download the multi-GB CUDA build.
TORCH ?= torch==2.13.0

.PHONY: install demo export readme clean-nbs test test-nbs test-py docs serve-docs check

install:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(TORCH)
	$(BIN)/pip install -e ".[dev]"
	$(BIN)/pip install --no-deps $$(cat tools/interop-requirements.txt)

demo: install
	$(BIN)/qllama chat

export:
	$(BIN)/nbdev_export
	$(BIN)/python tools/readme.py

readme:
	$(BIN)/python tools/readme.py

clean-nbs:
	$(BIN)/nbdev_clean

test: test-nbs test-py

test-nbs:
	TRITON_INTERPRET=1 OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers $(N_WORKERS) --timing

test-py:
	TRITON_INTERPRET=1 $(BIN)/python -m pytest tests/ -q

docs:
	$(BIN)/python tools/build_docs.py --n_workers $(N_WORKERS)

serve-docs:
	$(BIN)/python -m http.server 8000 --bind 127.0.0.1 --directory docs

check:
	VENV=$(VENV) N_WORKERS=$(N_WORKERS) bash .ci/run --no-install
