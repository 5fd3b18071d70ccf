#!/usr/bin/env bash
# Runs every Go fuzz target of the module (func FuzzXxx in a *_test.go) for a short while:
# FAIRING_FUZZTIME each (default 20000x; `go test -fuzztime` syntax, e.g. 100000x or 30s).
# A count, not a duration, by default: Go 1.26's coordinator can fail a duration-bounded run with
# a bare "context deadline exceeded" when a loaded machine starves its workers (go.dev/issue/75804).
# Their seed corpora (f.Add and testdata/fuzz/FuzzXxx/) already run in every `go test`; this adds
# fresh inputs. A failing input is saved by go test under the package's testdata/fuzz/ (commit it:
# it becomes a seed) and fails this script. Usage: bash test/fuzz.sh [PACKAGE_DIR...]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
FUZZTIME=${FAIRING_FUZZTIME:-20000x}
dirs=("$@")
if [ ${#dirs[@]} -eq 0 ]; then
  mapfile -t dirs < <(git ls-files '*_test.go' | xargs grep -l '^func Fuzz[A-Z][A-Za-z0-9_]*(f \*testing.F)' | xargs -n1 dirname | sort -u)
fi
failed=()
n=0
for d in "${dirs[@]}"; do
  for target in $(grep -ho '^func Fuzz[A-Z][A-Za-z0-9_]*(f \*testing.F)' "$d"/*_test.go | sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' | sort -u); do
    n=$((n + 1))
    echo "[fuzz] ./$d $target for $FUZZTIME" >&2
    if ! nice go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "./$d" >"${TMPDIR:-/tmp}/fuzz-$$.log" 2>&1; then
      cat "${TMPDIR:-/tmp}/fuzz-$$.log" >&2
      failed+=("./$d $target")
    fi
  done
done
rm -f "${TMPDIR:-/tmp}/fuzz-$$.log"
if [ ${#failed[@]} -gt 0 ]; then
  echo "[fuzz] failed: ${failed[*]}" >&2
  exit 1
fi
echo "[fuzz] $n targets passed ($FUZZTIME each)" >&2
