# Two entry points (see README): `make reproduce` runs the main job, `make test` the test suite.
# Each creates .venv on first use (pinned torch 2.14.1 / torchvision 0.29.1, pip only).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
FASHION_DIR := /usr/share/datasets/fashion-mnist
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: reproduce test lint data-deps

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

# Fashion-MNIST comes from Debian's dataset-fashion-mnist package (offline-ready idx files).
data-deps:
	@test -d $(FASHION_DIR) || { echo "installing Debian's dataset-fashion-mnist"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; }

reproduce: $(VENV)/.installed data-deps
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc repro

test: $(VENV)/.installed data-deps
	$(PY) -m pytest

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
