# Two entry points: `make lab` (the course) and `make test` (everything CI runs).
# Both create .venv on first use with Python 3.11+ (python3 on PATH, or PYTHON=...).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: lab test doctor clean-venv

$(BIN)/.ftcourse-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

lab: $(BIN)/.ftcourse-installed
	$(BIN)/ftcourse doctor
	$(BIN)/jupyter lab lessons/

test: $(BIN)/.ftcourse-installed
	$(BIN)/python -m pytest

doctor: $(BIN)/.ftcourse-installed
	$(BIN)/ftcourse doctor

clean-venv:
	rm -rf $(VENV)
