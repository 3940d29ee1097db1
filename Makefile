# The two commands of the README:
#   make demo   set up .venv, install crmhub, tell the whole story on the sandbox (no accounts, no credentials)
#   make test   set up .venv with the test extras and run the whole suite
#   make bench  every benchmark, one markdown table each, written to bench/results/latest.md (minutes; not a test)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench sandbox clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/crmhub demo

test: $(VENV)/.installed-test
	@scripts/install-chromium.sh
	@scripts/install-mailserver.sh
	$(BIN)/python -m pytest -n 3 -q  # 3 workers on 2 cores: about 45% of test time is waiting on daemons and servers

bench: $(VENV)/.installed-test
	$(BIN)/python bench/run.py

sandbox: $(VENV)/.installed
	$(BIN)/crmhub sandbox

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis crmhub.db .crmhub .bench-cache
