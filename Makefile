# Créneau: the two commands a fresh machine needs are `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: serve test bench lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,dev]"
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/creneau serve --fixtures --sandbox

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/rest.py
	$(BIN)/python bench/booking.py

lint: $(STAMP)
	$(BIN)/ruff check server tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .creneau
