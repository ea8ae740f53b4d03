# ptlab: two commands for a newcomer.
#   make lab    set up .venv (first time only) and open JupyterLab on notebooks/
#   make test   set up .venv (first time only), then lint, unit, notebook, Binder and browser tests
#
# The bootstrap is a stamp file inside .venv that depends on pyproject.toml and the pin file,
# so running either command again when nothing changed installs nothing.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
PORT ?= 8888
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
CONSTRAINTS := binder/constraints.txt
STAMP := $(VENV)/.ptlab-bootstrap.stamp
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
CHROMIUM ?= /usr/bin/chromium
NOTEBOOKS := notebooks
SANITIZE := $(NOTEBOOKS)/nbval_sanitize.cfg
# Clean runs: no .pytest_cache left behind, no state carried from one run to the next.
PYTEST := $(BIN)/pytest -p no:cacheprovider
IS_ROOT := $(filter 0,$(shell id -u))
ALLOW_ROOT := $(if $(IS_ROOT),--allow-root,)
SUDO := $(if $(IS_ROOT),,sudo)
# The runtime packages pinned for Binder (binder/requirements.txt); see `make pins`.
RUNTIME_PINS := ipywidgets jupyterlab jupyterlab_widgets matplotlib numpy

.PHONY: help bootstrap lab test lint unit nbval chromium screenshots pins clean

help:
	@echo "make lab          set up .venv if needed and start JupyterLab on $(NOTEBOOKS)/ (PORT=$(PORT))"
	@echo "make test         set up .venv if needed; lint, tests/ (incl. Binder + browser), nbval"
	@echo "make lint         ruff check + mypy"
	@echo "make screenshots  regenerate the README pictures in docs/img/ with the browser suite"
	@echo "make pins         rewrite binder/constraints.txt and binder/requirements.txt from .venv"

# ---- bootstrap -------------------------------------------------------------------------------

bootstrap: $(STAMP) $(LAB_SETTINGS)

$(PY):
	$(PYTHON) -m venv $(VENV)

# pip first: a current pip resolves and installs this set about twice as fast as Python's bundled one.
$(STAMP): pyproject.toml $(CONSTRAINTS) | $(PY)
	$(PY) -m pip install --upgrade -c $(CONSTRAINTS) pip
	$(PY) -m pip install -c $(CONSTRAINTS) -e '.[test]'
	touch $@

# Turn off JupyterLab's "Jupyter news" toast (it covers the lessons and the screenshots).
$(LAB_SETTINGS): binder/overrides.json $(STAMP)
	mkdir -p $(dir $@)
	cp binder/overrides.json $@

# ---- the two commands ------------------------------------------------------------------------

lab: bootstrap
	@token="$${TOKEN:-$$($(PY) -c 'import secrets; print(secrets.token_hex(24))')}"; \
	echo ""; \
	echo "  ptlab JupyterLab: open this URL in your browser (token included):"; \
	echo ""; \
	echo "      http://127.0.0.1:$(PORT)/lab?token=$$token"; \
	echo ""; \
	echo "  Stop with Ctrl-C."; \
	echo ""; \
	exec $(BIN)/jupyter lab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=$(PORT) \
		--ServerApp.port_retries=0 --ServerApp.token="$$token" \
		--ServerApp.root_dir=$(NOTEBOOKS) $(ALLOW_ROOT)

# Every suite runs even when an earlier one fails, so one run shows all the failures.
test: bootstrap chromium
	@failed=""; \
	for suite in lint unit nbval; do \
		start=$$SECONDS; \
		$(MAKE) --no-print-directory $$suite || failed="$$failed $$suite"; \
		echo "make test: $$suite took $$((SECONDS - start)) s"; \
	done; \
	if [ -n "$$failed" ]; then echo "make test: FAILED:$$failed"; exit 1; fi; \
	echo "make test: all suites passed"

# ---- pieces of `make test` -------------------------------------------------------------------

# Both linters run even if the first complains.
lint: bootstrap
	@status=0; \
	echo "$(BIN)/ruff check ."; $(BIN)/ruff check . || status=1; \
	echo "$(BIN)/mypy"; $(BIN)/mypy || status=1; \
	exit "$$status"

# One test module that fails to import must not hide the results of all the others.
unit: bootstrap chromium
	$(PYTEST) --continue-on-collection-errors tests/

# pytest exits 5 when it collects nothing (no notebooks yet): that is not a failure; any other
# non-zero status is.
nbval: bootstrap
	@status=0; \
	$(PYTEST) --nbval-lax --nbval-current-env --nbval-sanitize-with $(SANITIZE) $(NOTEBOOKS)/ \
		|| status=$$?; \
	if [ "$$status" -eq 5 ]; then echo "nbval: no notebooks collected (pytest exit 5), nothing to check"; exit 0; fi; \
	exit "$$status"

# Debian's Chromium for the browser suite; never a browser downloaded by a test tool.
chromium: $(CHROMIUM)

$(CHROMIUM):
	$(SUDO) apt-get update
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y chromium

# ---- helpers ---------------------------------------------------------------------------------

# README pictures come from the browser suite, so they always show what the current code renders.
screenshots: bootstrap chromium
	PTLAB_SCREENSHOT_DIR=docs/img $(PYTEST) -m browser tests/browser/

# Rewrite the pin files from what is installed in .venv (after a dependency change passes tests).
pins: bootstrap
	{ echo "# Full pin set for 'make lab' / 'make test' and Binder: every package in the tested .venv."; \
	  echo "# Regenerate with 'make pins' after changing dependencies (then re-run 'make test')."; \
	  echo "pip==$$($(PY) -m pip --version | cut -d' ' -f2)"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v -i -e '^ptlab' -e '^#'; \
	} > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	{ sed -n '/^#/p' binder/requirements.txt; echo "-c constraints.txt"; \
	  for name in $(RUNTIME_PINS); do grep -i "^$$name==" $(CONSTRAINTS); done; \
	} > binder/requirements.txt.new
	mv binder/requirements.txt.new binder/requirements.txt
	touch $(STAMP)

clean:
	rm -rf artifacts build .pytest_cache .mypy_cache .ruff_cache .hypothesis
