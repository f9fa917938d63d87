# Two commands do all the set-up: `make run` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PORT    ?= 8080
DEMO_PORT ?= 8099
# The example pipelines read these at load time (see README.md, Quick start).
DEMO_ENV := ERP_URL=http://127.0.0.1:$(DEMO_PORT)/erp ERP_TOKEN=demo-erp-token \
            PRICING_URL=http://127.0.0.1:$(DEMO_PORT)/pricing \
            BACKOFFICE_URL=http://127.0.0.1:$(DEMO_PORT)/backoffice BACKOFFICE_TOKEN=demo-bo-token \
            STRIPE_WEBHOOK_SECRET=whsec_demo_stripe_signing_secret

.PHONY: install run test lint schema bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@$(BIN)/python pipelines/demo_destination.py --port $(DEMO_PORT) & demo=$$!; \
	trap 'kill $$demo 2>/dev/null' EXIT INT TERM; \
	env $(DEMO_ENV) $(BIN)/hookline serve pipelines --host 127.0.0.1 --port $(PORT)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	env $(DEMO_ENV) $(BIN)/hookline lint pipelines

schema: $(STAMP)
	$(BIN)/hookline schema > schemas/pipeline.schema.json
	$(BIN)/hookline schema --tests > schemas/pipeline-test.schema.json

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

clean:
	rm -rf $(VENV) .tools .pytest_cache .hypothesis
