#!/usr/bin/env bash
# `make image`: the project's image (worker, trainer, CLI), the broker image and the Prometheus image, built with
# podman and no registry: a debootstrap base (base.sh), pip from a wheel folder filled once from PyPI, pinned by
# constraints.txt. Rebuilding after a code change reuses every layer but the last ones (seconds).
#   IMAGE_TAG (default dev), WHEELS (default .lettingo/wheels), BASE_IMAGE (default localhost/debian:bookworm),
#   ONLY="app broker prometheus" (a subset to build).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF=${CONTAINERS_CONF:-$PWD/deploy/containers.conf}
TAG=${IMAGE_TAG:-dev}
BASE=${BASE_IMAGE:-localhost/debian:bookworm}
WHEELS=${WHEELS:-$PWD/.lettingo/wheels}
KAFKA_LIBS=${KAFKA_LIBS:-$PWD/.lettingo/kafka/libs}
ONLY=${ONLY:-app broker prometheus}
PY=${PYTHON:-$( [[ -x .venv/bin/python ]] && echo .venv/bin/python || command -v python3.11 || command -v python3)}
HOST_CA=/etc/ssl/certs/ca-certificates.crt

for tool in podman debootstrap; do
  command -v $tool >/dev/null || { echo "$tool is missing: apt-get install -y podman runc debootstrap" >&2; exit 1; }
done
deploy/image/base.sh "$BASE"

ca_args=()
if [[ -f $HOST_CA ]]; then ca_args=(-v "$HOST_CA:/run/host-ca.crt:ro" --build-arg PIP_CA=/run/host-ca.crt); fi

build() {  # NAME CONTAINERFILE CONTEXT [podman build args...]
  local name=$1 file=$2 build_context=$3; shift 3
  local start=$SECONDS
  local log=${TMPDIR:-/tmp}/lettingo-build-$name.log
  nice -n 19 podman build --format docker --pull=never --network host --build-arg "BASE=$BASE" -f "$file" -t "localhost/$name:$TAG" \
    "$@" "$build_context" >"$log" 2>&1 || { tail -40 "$log" >&2; echo "podman build of $name failed; log: $log" >&2; exit 1; }
  echo "built localhost/$name:$TAG in $((SECONDS - start)) s ($(podman image inspect --format '{{.Size}}' "localhost/$name:$TAG" | numfmt --to=iec) )"
}

for what in $ONLY; do
  case $what in
    app)
      # A wheel for every pinned requirement, fetched once (about 3 GB: torch from PyPI is the CUDA build).
      if [[ ! -f $WHEELS/.complete || deploy/image/constraints.txt -nt $WHEELS/.complete || pyproject.toml -nt $WHEELS/.complete ]]; then
        mkdir -p "$WHEELS"
        echo "fetching wheels into $WHEELS"
        nice -n 19 "$PY" -m pip download -q -d "$WHEELS" -c deploy/image/constraints.txt . setuptools wheel
        touch "$WHEELS/.complete"
      fi
      build lettingo deploy/image/Containerfile . --ignorefile deploy/image/containerignore \
        -v "$WHEELS:/wheels:ro" --build-arg WHEELS=/wheels "${ca_args[@]}"
      ;;
    broker)
      if ! compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null; then
        mvn -q -B -f deploy/kafka/pom.xml package "-Dkafka.lib.dir=$KAFKA_LIBS"
      fi
      broker_context=$(mktemp -d /tmp/lettingo-broker-ctx.XXXXXX)
      # shellcheck disable=SC2064  # expanded now: the temporary folder, never a variable's later value
      trap "rm -rf '$broker_context'" EXIT
      cp -r "$KAFKA_LIBS" "$broker_context/libs"
      cp deploy/broker/* "$broker_context/"
      build lettingo-kafka deploy/broker/Containerfile "$broker_context"
      ;;
    prometheus)
      build lettingo-prometheus deploy/prometheus/Containerfile deploy/prometheus
      ;;
    *) echo "unknown image $what (app, broker, prometheus)" >&2; exit 2 ;;
  esac
done
