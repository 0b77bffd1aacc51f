# RadCommons: the two commands a newcomer needs.
#   make demo  - set everything up on a fresh machine and run the commons on synthetic data
#   make test  - run the whole test suite

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= var/demo
SITES  ?= 3
PATIENTS ?= 8
SEED   ?= 2026
PYTEST_WORKERS ?= auto

.PHONY: demo stop test venv viewer docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

viewer:
	scripts/install_viewer.sh

demo: $(STAMP)
	@scripts/install_viewer.sh || echo "(OHIF viewer not installed: it needs node and npm; the explorer works without it)"
	DEMO=$(DEMO) SITES=$(SITES) PATIENTS=$(PATIENTS) SEED=$(SEED) RC=$(BIN)/radcommons scripts/demo.sh

stop:
	-kill $$(cat $(DEMO)/commons/server.pid) 2>/dev/null

test: $(STAMP)
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

docs: $(STAMP)
	$(BIN)/radcommons dictionary docs docs/data-dictionary.md
	$(BIN)/python -m radcommons.deid.conformance docs/deid-conformance.md

clean:
	rm -rf var build dist src/*.egg-info
