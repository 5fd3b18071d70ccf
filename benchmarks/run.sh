#!/usr/bin/env bash
# The benchmark, in one command: fairing-builder against crane append, side by side, on a
# generated workload, against a real registry this script starts (and stops, even on failure).
#
#   bash benchmarks/run.sh                 # medium workload, 5 runs per scenario → benchmarks/results/DATE-medium/
#   bash benchmarks/run.sh --quick         # small workload, 2 runs (a few minutes) → $FAIRING_BENCH_WORK/results/
#   bash benchmarks/run.sh --size large --runs 3 --label large
#   bash benchmarks/run.sh profile --scenario unchanged [--size medium] [--n 5]   # CPU + heap profile of the builder
#
# Every other flag goes to `harness run` (see benchmarks/README.md). Environment:
#   FAIRING_BENCH_WORK           scratch root (default /tmp/fairing-bench; binaries are kept in its bin/)
#   FAIRING_BENCH_REGISTRY_PORT  registry port on 127.0.0.1 (default: a free one)
#   FAIRING_BENCH_KEEP=1         keep the generated context, caches and registry storage
# Exits non-zero only when something failed to run, never because of a timing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/test/lib.sh"
WORK=${FAIRING_BENCH_WORK:-/tmp/fairing-bench}
export FAIRING_TEST_WORK=${FAIRING_TEST_WORK:-$WORK} # where need_pkgs keeps its apt marker
CRANE_VERSION=v0.22.1
BIN=$WORK/bin
REG=$WORK/registry
mkdir -p "$BIN" "$REG"
blog() { echo "[bench $(date +%T)] $*" >&2; }

cleanup() {
  local rc=$?
  if [ -n "${HPID:-}" ]; then kill "$HPID" 2>/dev/null || true; wait "$HPID" 2>/dev/null || true; fi
  stop_pid "$REG/pid"
  if [ "${FAIRING_BENCH_KEEP:-}" != 1 ]; then
    rm -rf "$REG/storage" "$WORK/work"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

need_pkgs docker-registry curl busybox-static tar

cd "$ROOT"
blog "building fairing-builder and the harness"
rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- . ':!benchmarks/results' 2>/dev/null || rev="$rev-dirty"
go build -ldflags "-X main.version=$rev" -o "$BIN/fairing-builder" ./cmd/fairing-builder
go build -o "$BIN/harness" ./benchmarks/harness
go build -o "$BIN/launch" ./benchmarks/launch # beside the harness, which starts every tool through it

# crane, pinned: from the project's tool directive once go.mod has one, else from the module proxy.
if grep -q 'go-containerregistry/cmd/crane' go.mod; then
  go build -o "$BIN/crane" github.com/google/go-containerregistry/cmd/crane
elif [ "$("$BIN/crane" version 2>/dev/null)" != "$CRANE_VERSION" ]; then
  blog "building crane $CRANE_VERSION"
  GOBIN=$BIN go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"
fi
crane_version=$("$BIN/crane" version)

PORT=${FAIRING_BENCH_REGISTRY_PORT:-$("$BIN/harness" freeport)}
if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/v2/" 2>/dev/null; then
  echo "port $PORT already answers as a registry: set FAIRING_BENCH_REGISTRY_PORT to a free port" >&2
  exit 1
fi
rm -rf "$REG/storage"
mkdir -p "$REG/storage"
cat > "$REG/config.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $REG/storage}, delete: {enabled: true}, maintenance: {uploadpurging: {enabled: false}}}
http: {addr: 127.0.0.1:$PORT, secret: fairing-bench-not-secret}
YML
docker-registry serve "$REG/config.yml" > "$REG/log" 2>&1 &
echo $! > "$REG/pid"
wait_http "http://127.0.0.1:$PORT/v2/" || { cat "$REG/log" >&2; exit 1; }
blog "registry on 127.0.0.1:$PORT"

# The base: busybox-static in one layer (the recipe in real-parts.md).
BB=$WORK/busybox
rm -rf "$BB" && mkdir -p "$BB/root/bin" "$BB/root/tmp" "$BB/root/etc"
cp /bin/busybox "$BB/root/bin/"
for a in sh ls cat echo env; do ln -sf busybox "$BB/root/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$BB/root/etc/passwd"
chmod 1777 "$BB/root/tmp"
tar --sort=name --mtime=@0 --numeric-owner --owner=0 --group=0 -C "$BB/root" -cf "$BB/busybox.tar" .
BASE=127.0.0.1:$PORT/base/busybox:1
"$BIN/crane" append --oci-empty-base -t "127.0.0.1:$PORT/base/busybox:tmp" -f "$BB/busybox.tar" >/dev/null
"$BIN/crane" mutate "127.0.0.1:$PORT/base/busybox:tmp" --set-platform linux/amd64 \
  -e PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/sh -t "$BASE" >/dev/null

# The harness runs in the background so that a signal reaches the traps at once; cleanup
# stops it (it stops its tools) before the registry.
if [ "${1:-}" = profile ]; then
  shift
  "$BIN/harness" profile -registry "127.0.0.1:$PORT" -base "$BASE" -work "$WORK/work" "$@" &
  HPID=$!
  wait "$HPID"
  exit
fi

versions="builder=fairing-builder $rev ($(go version | awk '{print $3}'));crane=crane $crane_version;registry=$(docker-registry --version 2>&1 | head -1);tar=$(tar --version | head -1)"
"$BIN/harness" run -registry "127.0.0.1:$PORT" -base "$BASE" -builder "$BIN/fairing-builder" -crane "$BIN/crane" \
  -work "$WORK/work" -versions "$versions" "$@" &
HPID=$!
wait "$HPID"
