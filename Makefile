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
# the official MNIST test set beside the clone, when there is one and RAGAN_MNIST is not set; without it, examples
# and tests use the 2,000 test digits ragan_nb ships (ragan_nb.data.mnist_test_folder)
ifeq ($(origin RAGAN_MNIST),undefined)
ifneq ($(wildcard ../shared/data/mnist/t10k-images-idx3-ubyte.gz),)
export RAGAN_MNIST := $(abspath ../shared/data/mnist)
endif
endif

.PHONY: install data demo readme docs test nbtest pytest export clean check-sync

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip $(QUIET)
	$(BIN)/python -m pip install -q $(TORCH) $(QUIET)
	$(BIN)/python -m pip install -q -e '.[dev]' $(QUIET)
	touch $(STAMP)

install: $(STAMP)

## data: Fashion-MNIST from Debian's package (root + apt); without it ragan-train downloads through torchvision
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
data:
	@if [ -f $(FMNIST) ]; then echo "Fashion-MNIST: $(dir $(FMNIST))"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null && echo "installed dataset-fashion-mnist"; \
	else echo "dataset-fashion-mnist is not installed (needs root and apt-get); ragan-train will try a download"; fi

## demo: the main job on a fresh machine: 1 epoch of RaLSGAN on Fashion-MNIST on the CPU, into
## result/fashion_mnist_RaLSGAN/, the folder README.md's next command (`ragan-eval result/fashion_mnist_RaLSGAN`) reads;
## it ends by printing that command. A second `make demo` refuses to overwrite the run: DEMO_OUT=other picks another folder
DEMO_OUT ?= result
demo: $(STAMP) data
	$(BIN)/ragan-train --dataset fashion_mnist --loss RaLSGAN --epochs 1 --device cpu --out $(DEMO_OUT)

## test: every notebook (nbdev-test) and tests/ (pytest)
test: data nbtest pytest

nbtest: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/nbdev-test --timing --do-print

## pytest: two workers (pytest-xdist) on the 2-core test machine, one thread each; a test file stays on one worker (its
## module fixtures: a trained run, a command server, a docs build are made once), slow files first (tests/conftest.py)
PYTEST_WORKERS ?= 2
pytest: $(STAMP)
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest tests/ -q -n $(PYTEST_WORKERS) --dist loadfile --no-loadscope-reorder

export: $(STAMP)
	$(BIN)/nbdev-export

clean: $(STAMP)
	$(BIN)/nbdev-clean

## readme: README.md from nbs/index.ipynb (nbdev's readme command needs Quarto)
readme: $(STAMP)
	$(BIN)/python tools/make_readme.py

## docs: the docs site in _docs/ without Quarto: nbdev processes nbs/ into _proc/ (as nbdev-docs does), smalldocs
## renders nbs/_quarto.yml, KaTeX comes from tools/katex/. Where Quarto is installed, nbdev-docs builds the same site.
docs: $(STAMP)
	$(BIN)/python tools/build_docs.py

## check-sync: fail if nbdev-export or nbdev-clean would change a committed file
check-sync: $(STAMP)
	$(BIN)/nbdev-export
	$(BIN)/nbdev-clean
	@if [ -n "$$(git status --porcelain -- ragan_nb nbs)" ]; then \
	  git status --porcelain -- ragan_nb nbs; git --no-pager diff --stat -- ragan_nb nbs; \
	  echo "check-sync: nbdev-export/nbdev-clean changed files above: run them and commit"; exit 1; fi
	@echo "check-sync: ragan_nb/ and nbs/ are in sync"
