# One entry point for a fresh machine: `make test` builds .venv (or reuses it) and runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# pip's notes about this machine's local package folders are noise here
QUIET := 2>&1 | { grep -v "^WARNING: Location" || true; }
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is not pinned in the package metadata (users bring their own); this is the build we test with.
TORCH  := torch==2.14.1 torchvision==0.29.1

.PHONY: install test nbtest pytest export clean check-sync

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip $(QUIET)
	$(BIN)/python -m pip install -q $(TORCH) $(QUIET)
	$(BIN)/python -m pip install -q -e '.[dev]' $(QUIET)
	touch $(STAMP)

install: $(STAMP)

## test: every notebook (nbdev-test) and tests/ (pytest)
test: nbtest pytest

nbtest: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/nbdev-test --timing --do-print

pytest: $(STAMP)
	$(BIN)/python -m pytest tests/ -q

export: $(STAMP)
	$(BIN)/nbdev-export

clean: $(STAMP)
	$(BIN)/nbdev-clean

## check-sync: fail if nbdev-export or nbdev-clean would change a committed file
check-sync: $(STAMP)
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	@if [ -n "$$(git status --porcelain -- ragan_nb nbs)" ]; then \
	  git status --porcelain -- ragan_nb nbs; git --no-pager diff --stat -- ragan_nb nbs; \
	  echo "check-sync: nbdev-export/nbdev-clean changed files above: run them and commit"; exit 1; fi
	@echo "check-sync: ragan_nb/ and nbs/ are in sync"
