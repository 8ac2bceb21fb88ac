# Two commands do all the set-up: `make train` and `make test` create .venv and install the project into it.
PYTHON ?= python3
VENV ?= .venv
PIP_ARGS ?=
ARGS ?=
BIN := $(VENV)/bin

.PHONY: train test bench lint format clean

train: $(VENV)/.installed
	$(BIN)/python -m lr_from_scratch.train $(ARGS)

test: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest --benchmark-disable $(ARGS)
	@echo "The kernels once more as plain Python (NUMBA_DISABLE_JIT=1), so every line of them runs:"
	NUMBA_DISABLE_JIT=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_kernels.py

bench: $(VENV)/.installed
	$(BIN)/python -m pytest --benchmark-only -q $(ARGS)

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(VENV)/.installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(PIP_ARGS) -c constraints.txt -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks build *.egg-info
