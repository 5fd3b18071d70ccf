#!/usr/bin/env bash
# Runs the BuildKit-path benchmark with the real parts the test setup starts (registry, the
# Python base when test/setup.d provides it, buildkitd), then stops them.
#   bash benchmarks/buildkit/run.sh [-runs N] [-files N] [-json out.json]
# Env: FAIRING_TEST_WORK (default /tmp/fairing-bench-buildkit), FAIRING_TEST_REGISTRY_PORT (default 5000),
#      FAIRING_TEST_PYTHON_BASE to use an existing base instead of the setup's.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
export FAIRING_TEST_WORK=${FAIRING_TEST_WORK:-/tmp/fairing-bench-buildkit}
. test/lib.sh
mkdir -p "$FAIRING_TEST_WORK"
scripts=()
for s in test/setup.d/*.sh; do
  case "$(basename "$s")" in
  *registry* | *bases* | *buildkitd*) scripts+=("$s") ;;
  esac
done
down_all() {
  local i
  for ((i = ${#scripts[@]} - 1; i >= 0; i--)); do bash "${scripts[$i]}" down || true; done
}
down_all >/dev/null 2>&1 || true
: >"$FAIRING_TEST_WORK/env.sh"
trap down_all EXIT
for s in "${scripts[@]}"; do
  bash "$s" up
  . "$FAIRING_TEST_WORK/env.sh"
done
nice go run ./benchmarks/buildkit "$@"
