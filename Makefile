# The two commands of the README, each idempotent and doing its own set-up:
#   make demo   - the main job on its local defaults
#   make test   - the whole test suite against a real Kafka broker
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LETTINGO := $(BIN)/lettingo
DATASET ?= ../shared/data/ml-latest-small
KAFKA_LIBS := .lettingo/kafka/libs

.PHONY: demo test setup system-deps kafka-jars broker-start broker-stop lint bench clean

# The whole loop on ml-latest-small; DEMO_ARGS= (empty) runs every user with the full nano model.
DEMO_ARGS ?= --quick
demo: setup kafka-jars
	$(LETTINGO) demo --dataset $(DATASET) $(DEMO_ARGS)

test: setup kafka-jars
	$(BIN)/python -m pytest

setup: system-deps $(VENV)/.installed

# Java runs the broker, Maven fetches its jars; install them from Debian's packages when missing.
system-deps:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  echo "installing Java 17 and Maven (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null; }

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

kafka-jars: $(KAFKA_LIBS)/.fetched

$(KAFKA_LIBS)/.fetched: deploy/kafka/pom.xml
	mvn -q -B -f deploy/kafka/pom.xml package -Dkafka.lib.dir=$(abspath $(KAFKA_LIBS))
	touch $@

broker-start: setup kafka-jars
	$(LETTINGO) broker start

broker-stop:
	$(LETTINGO) broker stop

# Benchmarks: tables on stdout, figures in bench/results/*.json; BENCH_ARGS="--quick --only ingest,state"
bench: setup kafka-jars
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check lettingo streams trainer tests bench
	$(BIN)/ruff format --check lettingo streams trainer tests bench

clean:
	-$(LETTINGO) broker stop
	rm -rf .lettingo runs
