#!/usr/bin/env bash
# Builds the base image localhost/debian:bookworm with debootstrap (no container registry needed) unless it exists.
# The Debian mirror is read from the host's apt sources at run time; it is never written into the repository.
# Usage: deploy/image/base.sh [IMAGE]   (needs root, debootstrap and podman; CONTAINERS_CONF=deploy/containers.conf)
set -euo pipefail
IMAGE=${1:-localhost/debian:bookworm}
SUITE=${SUITE:-bookworm}
if podman image exists "$IMAGE"; then
  echo "base image $IMAGE exists"
  exit 0
fi
SOURCES=/etc/apt/sources.list.d/debian.sources
if [[ -f $SOURCES ]]; then
  MIRROR=$(awk '/^URIs:/ {print $2; exit}' "$SOURCES")
else
  MIRROR=$(awk '$1 == "deb" && $3 ~ /^'"$SUITE"'$/ {print $2; exit}' /etc/apt/sources.list)
fi
[[ -n ${MIRROR:-} ]] || { echo "no Debian mirror found in $SOURCES or /etc/apt/sources.list" >&2; exit 1; }
ROOTFS=$(mktemp -d /tmp/lettingo-rootfs.XXXXXX)
trap "rm -rf '$ROOTFS'" EXIT  # expanded now
echo "debootstrap $SUITE from $MIRROR into $ROOTFS"
nice -n 19 debootstrap --variant=minbase "$SUITE" "$ROOTFS" "$MIRROR" >"$ROOTFS.log" 2>&1 || {
  tail -20 "$ROOTFS.log" >&2; exit 1; }
rm -f "$ROOTFS.log"
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
if [[ -f $SOURCES ]]; then
  rm -f "$ROOTFS/etc/apt/sources.list"
  cp "$SOURCES" "$ROOTFS/etc/apt/sources.list.d/debian.sources"
fi
tar -C "$ROOTFS" -c . | nice -n 19 podman import --quiet --change 'CMD ["/bin/bash"]' - "$IMAGE" >/dev/null
echo "imported $IMAGE ($(podman image inspect --format '{{.Size}}' "$IMAGE") bytes)"
