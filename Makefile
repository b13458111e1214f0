# Two commands do everything on a fresh machine:
#   make quickstart   # install into .venv and train the offline quickstart recipe
#   make test         # install into .venv and run the test suite
# torch is pinned in constraints.txt (2.13.0 resolves to a CPU build on CPU machines; an
# unpinned torch pulls several GB of CUDA packages). On a GPU machine install the CUDA torch first.
PYTHON ?= python3
VENV ?= .venv
PIP_FLAGS ?=

BIN := $(VENV)/bin

.PHONY: install quickstart test acceptance clean

$(BIN)/audiocnn: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip $(PIP_FLAGS)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[test]" $(PIP_FLAGS)
	@touch $@

install: $(BIN)/audiocnn

quickstart: install
	$(BIN)/audiocnn train recipes/quickstart.yaml

test: install
	$(BIN)/python -m pytest -q -rs

acceptance: install
	$(BIN)/python benchmarks/acceptance.py

clean:
	rm -rf $(VENV) runs .pytest_cache
