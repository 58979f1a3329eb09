# One command per job. A fresh machine needs only Python 3.11 with pip and venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# nbgrader calls the `alembic` command when it creates a gradebook.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install build demo test lint format bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

build: install  ## regenerate release/ and notebooks/ from source/
	$(PY) -m toeplitz_course build

demo: install  ## build, collect, grade, feed back and export the bundled example class
	$(PY) -m toeplitz_course demo

test: install  ## the whole suite (what CI runs)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format .

bench: install  ## stock nbgrader autograde vs grade --jobs, 40 students
	$(PY) -m toeplitz_course bench --students 40

clean:
	rm -rf demo .grading .pytest_cache
