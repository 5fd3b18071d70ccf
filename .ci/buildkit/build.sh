#!/usr/bin/env bash
# Build buildkitd and buildctl at the BuildKit version go.mod pins, once per machine.
#
# `go install github.com/moby/buildkit/cmd/buildkitd@vX` is refused (BuildKit's go.mod has exclude
# directives), so the module is copied out of the module cache and built as the main module.
# The binaries land in a directory keyed on the version, so a second run (or another worktree)
# finds them and returns at once. Cold: ~2 min on 2 cores; warm Go caches: a few seconds.
#
# Usage: .ci/buildkit/build.sh        prints the directory holding bin/buildkitd and bin/buildctl
# Env:   FAIRING_BUILDKIT_VERSION     override the version (default: the one go.mod requires)
#        FAIRING_TOOLS_CACHE          root of the per-machine tool cache (default ~/.cache/fairing)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
V=${FAIRING_BUILDKIT_VERSION:-$(cd "$ROOT" && go list -m -f '{{.Version}}' github.com/moby/buildkit)}
OUT=${FAIRING_TOOLS_CACHE:-$HOME/.cache/fairing}/buildkit-$V
if [ -x "$OUT/bin/buildkitd" ] && [ -x "$OUT/bin/buildctl" ]; then
  echo "$OUT"; exit 0
fi
# one builder at a time per machine: parallel worktrees wait for the first build instead of repeating it
mkdir -p "$(dirname "$OUT")"
exec 9>"$OUT.lock"
flock 9
if [ -x "$OUT/bin/buildkitd" ] && [ -x "$OUT/bin/buildctl" ]; then
  echo "$OUT"; exit 0
fi
start=$SECONDS
DIR=$(go mod download -json "github.com/moby/buildkit@$V" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
[ -d "$DIR" ] || { echo "go mod download github.com/moby/buildkit@$V gave no directory" >&2; exit 1; }
TMP=$(mktemp -d "$OUT.build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
cp -r "$DIR" "$TMP/src" && chmod -R u+w "$TMP/src"
mkdir -p "$TMP/bin"
(cd "$TMP/src" && for c in buildkitd buildctl; do
  nice go build -trimpath -ldflags "-s -w -X github.com/moby/buildkit/version.Version=$V" -o "$TMP/bin/$c" "./cmd/$c" >&2
done)
rm -rf "$OUT" && mkdir -p "$OUT" && mv "$TMP/bin" "$OUT/bin"
echo "built buildkitd+buildctl $V in $((SECONDS-start))s into $OUT" >&2
echo "$OUT"
