# The two commands of the README: `make demo` and `make test`. Both set everything up themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

PRISM_VERSION := 5.16.0
PRISM := .run/node/node_modules/.bin/prism

.PHONY: install demo test unit integration e2e contract contract-deps kafka-start kafka-stop compose-check clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## The whole pipeline on a real Kafka broker: a simulated transformer fault becomes an alert and SMS.
demo: install
	$(BIN)/gridwatch demo $(ARGS)

## Unit tests, then integration tests on a real broker (started by the tests when none answers), then the
## console's browser tests (tests/e2e, run last by their conftest; they need Debian's /usr/bin/chromium).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: install
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

## The operations console's page in a real headless Chromium (apt-get install chromium), on a real broker.
e2e: install
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

## Stoplight Prism, to check our Twilio requests against Twilio's own OpenAPI spec (needs Node.js + npm).
contract-deps: $(PRISM)

$(PRISM):
	mkdir -p .run/node
	npm install --prefix .run/node --no-audit --no-fund --silent @stoplight/prism-cli@$(PRISM_VERSION)

contract: install contract-deps
	$(BIN)/python -m pytest tests/contract $(PYTEST_ARGS)

kafka-start: install
	$(BIN)/gridwatch kafka start

kafka-stop: install
	$(BIN)/gridwatch kafka stop

compose-check:
	docker-compose -f docker-compose.yml config -q

clean:
	rm -rf .run test-output
