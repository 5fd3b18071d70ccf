#!/usr/bin/env bash
# fairing's own images, built by `make images` (images/build.sh: fairing-builder builds them) and pushed to the
# test registry under $FAIRING_TEST_REGISTRY/fairing, for the in-cluster build tests (test/incluster):
#   FAIRING_TEST_BUILDER_IMAGE  fairing-builder image (index linux/amd64 + linux/arm64), by digest
#   FAIRING_TEST_SUBMIT_IMAGE   fairing-submit image, by digest
#   FAIRING_TEST_BUILDKIT_IMAGE the BuildKit-capable builder (fairing-builder + buildkitd + runc), by digest
#   FAIRING_TEST_BASE_IMAGE     their base (busybox, CA certificates, user nonroot), by digest
#   FAIRING_TEST_IMAGES_EPOCH   the SOURCE_DATE_EPOCH they were built with (VERSION is "test")
# Cost: ~20 s with warm Go caches; the first cross-compilation (fairing-builder, fairing-submit and buildkitd
# for both platforms) takes 10-15 minutes on 2 cores.
# up: build and push, export.  down: remove the scratch dir.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$FAIRING_TEST_WORK/images
case "$1" in
up)
  : "${FAIRING_TEST_REGISTRY:?run 10-registry.sh first (it exports FAIRING_TEST_REGISTRY)}"
  need_pkgs make
  start=$SECONDS
  rm -rf "$W" && mkdir -p "$W"
  # a fixed creation time, so that test/images can rebuild them and compare digests
  epoch=$(cd "$ROOT" && git log -1 --format=%ct 2>/dev/null || echo 0)
  (cd "$ROOT" && SOURCE_DATE_EPOCH=$epoch IMAGES_WORK=$W/work IMAGES_OUT=$W/images.env VERSION=test make -s images REGISTRY="$FAIRING_TEST_REGISTRY/fairing") >/dev/null 2>"$W/log" ||
    { tail -40 "$W/log" >&2; exit 1; }
  get() { sed -n "s/^$1=//p" "$W/images.env"; }
  export_env FAIRING_TEST_BUILDER_IMAGE "$(get fairing-builder)"
  export_env FAIRING_TEST_SUBMIT_IMAGE "$(get fairing-submit)"
  export_env FAIRING_TEST_BUILDKIT_IMAGE "$(get fairing-builder-buildkit)"
  export_env FAIRING_TEST_BASE_IMAGE "$(get fairing-base)"
  export_env FAIRING_TEST_IMAGES_EPOCH "$epoch"
  rm -rf "$W/work"
  log "images built and pushed in $((SECONDS - start))s: $(tr '\n' ' ' < "$W/images.env")"
  ;;
down)
  rm -rf "$W"
  ;;
esac
