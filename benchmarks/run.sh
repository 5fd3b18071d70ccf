#!/usr/bin/env bash
# The benchmark, in one command: fairing-builder (append path, BuildKit path, in-cluster style,
# zstd and eStargz) against crane append, buildctl, buildah and docker build, side by side, on
# generated workloads. The harness starts every server it needs on 127.0.0.1 (two registries,
# a buildkitd per BuildKit client, dockerd with its own data root) and stops them on exit,
# failure or Ctrl-C; this script installs the packages and builds the binaries.
#
#   bash benchmarks/run.sh                  # full matrix: small, medium (5 runs), large (2 runs) + deps suite → benchmarks/results/DATE-LABEL/
#   bash benchmarks/run.sh --quick          # small workload, 2 runs, no buildah/docker (~3 min) → $FAIRING_BENCH_WORK/results/
#   bash benchmarks/run.sh -sizes medium -runs 5 -label medium
#   bash benchmarks/run.sh profile -scenario unchanged [-size medium] [-n 5]   # CPU + heap profile of the builder
#
# Every other flag goes to `harness run` (see benchmarks/README.md). Environment:
#   FAIRING_BENCH_WORK           scratch root (default /tmp/fairing-bench; binaries are kept in its bin/)
#   FAIRING_BENCH_REGISTRY_PORT  main registry port on 127.0.0.1 (default: a free one)
#   FAIRING_BENCH_KEEP=1         keep the registries' storage afterwards
# Exits non-zero only when something failed to run, never because of a timing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/test/lib.sh"
WORK=${FAIRING_BENCH_WORK:-/tmp/fairing-bench}
export FAIRING_TEST_WORK=${FAIRING_TEST_WORK:-$WORK} # where need_pkgs keeps its apt marker
BIN=$WORK/bin
mkdir -p "$BIN" "$WORK/work"
blog() { echo "[bench $(date +%T)] $*" >&2; }

quick=0 profile=0
for a in "$@"; do
  case $a in --quick | -quick) quick=1 ;; esac
done
[ "${1:-}" = profile ] && profile=1

cleanup() {
  local rc=$? f
  if [ -n "${HPID:-}" ]; then
    kill "$HPID" 2>/dev/null || true
    wait "$HPID" 2>/dev/null || true
  fi
  # The harness stops its daemons itself; these PID files remain only if it was killed hard.
  for f in "$WORK"/work/pids/*.pid; do
    [ -e "$f" ] && stop_pid "$f"
  done
  unmount_under "$WORK/work"
  if [ "${FAIRING_BENCH_KEEP:-}" != 1 ]; then
    rm -rf --one-file-system "$WORK/work"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pkgs=(docker-registry curl busybox-static tar runc util-linux)
[ $quick = 1 ] || [ $profile = 1 ] || pkgs+=(buildah docker.io)
need_pkgs "${pkgs[@]}"

cd "$ROOT"
blog "building fairing-builder, the harness and crane"
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- . ':!benchmarks/results' 2>/dev/null || rev="$rev-dirty"
go build -ldflags "-X main.version=$rev" -o "$BIN/fairing-builder" ./cmd/fairing-builder
go build -o "$BIN/harness" ./benchmarks/harness
go build -o "$BIN/launch" ./benchmarks/launch # beside the harness, which starts every tool through it
go build -o "$BIN/crane" github.com/google/go-containerregistry/cmd/crane # the version go.mod's tool line pins

if [ $profile = 1 ]; then
  shift
  "$BIN/harness" profile -registry-bin "$(command -v docker-registry)" -work "$WORK/work" "$@" &
  HPID=$!
  wait "$HPID"
  exit
fi

BK=$(bash "$ROOT/.ci/buildkit/build.sh") # buildkitd + buildctl at the version go.mod pins (cached per machine)

# The deps suite's base: Debian minbase + python3 + pip, the layer test/setup.d/20-bases.sh
# builds and caches (same recipe, same cache). Quick runs use it only if it is already there.
python_layer() {
  local cache key c m
  cache=${XDG_CACHE_HOME:-$HOME/.cache}/fairing-test
  key=$(sha256sum "$ROOT/images/base/debian.sh" | cut -c1-16)
  c=$cache/debian-$key
  if [ ! -f "$c/notebook.tar.gz" ]; then
    [ $quick = 1 ] && return 0
    m=$(grep -hsE '^[[:space:]]*URIs:[[:space:]]*[^[:space:]]+/debian/?[[:space:]]*$' /etc/apt/sources.list.d/*.sources | awk '{print $2; exit}')
    export FAIRING_TEST_DEBIAN_MIRROR=${FAIRING_TEST_DEBIAN_MIRROR:-${m:-http://deb.debian.org/debian}}
    mkdir -p "$cache"
    (
      flock 9
      if [ ! -f "$c/notebook.tar.gz" ]; then
        blog "building the Debian python layer (minutes; cached in $c)"
        need_pkgs debootstrap rsync file
        rm -rf "$c.tmp"
        bash "$ROOT/images/base/debian.sh" "$c.tmp" "$WORK/debian" >&2
        mv "$c.tmp" "$c"
      fi
    ) 9>"$cache/.debian-$key.lock" || return 0
  fi
  echo "$c/python.tar.gz"
}
PY=$(python_layer)
[ -n "$PY" ] || blog "no cached python layer: the deps suite is skipped (make test builds it)"

v() { "$@" 2>&1 | head -1; }
versions="fairing-builder=$rev ($(go version | awk '{print $3}'))"
versions+=";crane=$("$BIN/crane" version)"
versions+=";buildkitd=$(v "$BK/bin/buildkitd" --version)"
versions+=";registry=$(v docker-registry --version)"
versions+=";tar=$(v tar --version)"
command -v buildah >/dev/null && versions+=";buildah=$(v buildah --version)"
command -v dockerd >/dev/null && versions+=";dockerd=$(v dockerd --version)"

PORT_ARGS=()
[ -n "${FAIRING_BENCH_REGISTRY_PORT:-}" ] && PORT_ARGS=(-registry-port "$FAIRING_BENCH_REGISTRY_PORT")

# The harness runs in the background so that a signal reaches the traps at once; cleanup
# stops it (it stops its daemons) before anything else.
"$BIN/harness" run -builder "$BIN/fairing-builder" -crane "$BIN/crane" -buildkitd "$BK/bin/buildkitd" -buildctl "$BK/bin/buildctl" \
  -registry-bin "$(command -v docker-registry)" -python-layer "$PY" -work "$WORK/work" -versions "$versions" "${PORT_ARGS[@]}" "$@" &
HPID=$!
wait "$HPID"
