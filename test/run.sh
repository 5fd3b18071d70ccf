#!/usr/bin/env bash
# The whole test suite, as CI runs it (`make test`): installs what the tests need (apt-get, go build),
# starts the real parts on 127.0.0.1 (registry, buildkitd, Kubernetes), runs `go test ./...` with every
# real-part test enabled, and stops everything it started, even on failure.
#
# Each test/setup.d/NN-*.sh is run as `script up` in order and `script down` in reverse order; `up`
# exports what the tests need through export_env (test/lib.sh) into $FAIRING_TEST_WORK/env.sh.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export FAIRING_TEST_WORK=${FAIRING_TEST_WORK:-/tmp/fairing-test}
. test/lib.sh
mkdir -p "$FAIRING_TEST_WORK"
scripts=(test/setup.d/*.sh)

down_all() {
  local i
  for (( i=${#scripts[@]}-1; i>=0; i-- )); do bash "${scripts[$i]}" down || true; done
}
# a previous run that was killed may have left its servers behind: stop them first
down_all >/dev/null 2>&1 || true
: > "$FAIRING_TEST_WORK/env.sh"
trap down_all EXIT

start=$SECONDS
for s in "${scripts[@]}"; do
  log "setup: $s"
  bash "$s" up
  . "$FAIRING_TEST_WORK/env.sh"
done
log "setup done in $((SECONDS-start))s"

# FAIRING_TEST_REAL=1: a test that needs a real part fails (not skips) when the part is missing.
export FAIRING_TEST_REAL=1
go vet ./...
test -z "$(gofmt -l $(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $(git ls-files '*.go'); exit 1; }
go test -count=1 -timeout 60m ${GO_TEST_FLAGS:-} ./...

# The benchmark harness must keep working: a quick run against its own registry (timings are
# reported, never checked here).
FAIRING_BENCH_WORK=$FAIRING_TEST_WORK/bench bash benchmarks/run.sh --quick

# A short fuzzing run of every fuzz target (seed corpora in the repo), so the targets never rot.
bash test/fuzz.sh
