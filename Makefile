# Two entry points: `make lab` (the course) and `make test` (everything CI runs).
# Both create .venv on first use with Python 3.11+ (python3 on PATH, or PYTHON=...).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: lab test test-fast doctor clean-venv

$(BIN)/.ftcourse-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[test]"
	touch $@

lab: $(BIN)/.ftcourse-installed
	$(BIN)/ftcourse doctor
	$(BIN)/ftcourse lessons ftcourse-lessons
	$(BIN)/jupyter lab ftcourse-lessons/

# Your own copies of the lessons in ftcourse-lessons/ (copies only what is missing, never overwrites).
.PHONY: lessons
lessons: $(BIN)/.ftcourse-installed
	$(BIN)/ftcourse lessons ftcourse-lessons

test: $(BIN)/.ftcourse-installed
	$(BIN)/python -m pytest

# Quick local loop: the unit tests only (no claim tests over seeds, no notebooks). CI runs `make test`.
test-fast: $(BIN)/.ftcourse-installed
	$(BIN)/python -m pytest -m "not slow" tests

doctor: $(BIN)/.ftcourse-installed
	$(BIN)/ftcourse doctor

clean-venv:
	rm -rf $(VENV)
