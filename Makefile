# The two commands of the README: `make demo` and `make test`. Both set everything up themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test unit integration kafka-start kafka-stop compose-check clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e .
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## The whole pipeline on a real Kafka broker: a simulated transformer fault becomes an alert and SMS.
demo: install
	$(BIN)/gridwatch demo $(ARGS)

## Unit tests, then integration tests on a real broker (started by the tests when none answers).
test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

unit: install
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

integration: install
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

kafka-start: install
	$(BIN)/gridwatch kafka start

kafka-stop: install
	$(BIN)/gridwatch kafka stop

compose-check:
	docker-compose -f docker-compose.yml config -q

clean:
	rm -rf .run test-output
