#!/usr/bin/env bash
# A real single-node Kubernetes cluster on 127.0.0.1: etcd, kube-apiserver (RBAC), kube-controller-manager,
# kube-scheduler, containerd v2 + runc + bridge CNI, and a real kubelet, built from the Go module proxy
# (.ci/k8s/build.sh: ~7 min cold, 0 s once built, keyed on the pinned tool modules).
# up: build, push the pause image to $FAIRING_TEST_REGISTRY (the cluster pulls it from there over plain
#   http, like every image the tests run, e.g. 20-bases.sh's busybox), start the cluster, export
#   TEST_KUBECONFIG       admin kubeconfig (system:masters)
#   TEST_DEV_KUBECONFIG   kubeconfig of token user "dev" (group "devs") with no rights
# down: stop it and remove everything it left on the host (processes, mounts, cgroups, bridge, host paths).
# One cluster per machine (bridge cibr0, /kubepods cgroups and the ports are machine-wide).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
R=$FAIRING_TEST_WORK/k8s
case "$1" in
up)
  need_pkgs runc containernetworking-plugins gcc libc6-dev openssl curl iproute2
  s=$SECONDS
  BIN=$(bash "$ROOT/.ci/k8s/build.sh")
  log "cluster binaries in $BIN ($((SECONDS-s))s)"
  : "${FAIRING_TEST_REGISTRY:?the registry (10-registry.sh) must be up first}"
  (cd "$ROOT" && go run ./test/submit/pushimages -registry "$FAIRING_TEST_REGISTRY" -pause "$BIN/pause") >/dev/null
  bash "$ROOT/.ci/k8s/down.sh" "$R" >/dev/null 2>&1 || true
  s=$SECONDS
  REGISTRY=$FAIRING_TEST_REGISTRY bash "$ROOT/.ci/k8s/up.sh" "$BIN" "$R"
  log "kubernetes up in $((SECONDS-s))s"
  export_env TEST_KUBECONFIG "$R/admin.kubeconfig"
  export_env TEST_DEV_KUBECONFIG "$R/dev.kubeconfig"
  ;;
down)
  bash "$ROOT/.ci/k8s/down.sh" "$R"
  ;;
esac
