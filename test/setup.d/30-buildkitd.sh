#!/usr/bin/env bash
# A real buildkitd (BuildKit at the version go.mod pins, OCI worker, Debian's runc), as root, on a unix
# socket under $FAIRING_TEST_WORK/buildkitd.
# up:   build buildkitd+buildctl once per machine (.ci/buildkit/build.sh, cold ~2-3 min, then instant),
#       start the daemon and export
#         FAIRING_TEST_BUILDKIT_ADDR  unix:// address of the running daemon
#         FAIRING_TEST_BUILDKITD      the buildkitd binary (daemonless tests start their own)
#         FAIRING_TEST_BUILDCTL       the matching buildctl (benchmarks, debugging)
# down: stop it, check that no mount is left under its state dir, drop the state.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$FAIRING_TEST_WORK/buildkitd

# unmount_under DIR: lazily unmount whatever is still mounted below DIR (deepest first).
unmount_under() {
  local m
  awk -v d="$1/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
    log "buildkitd left a mount behind: $m (unmounting)"
    umount -l "$m" || true
  done
}

case "$1" in
up)
  need_pkgs runc
  [ "$(id -u)" = 0 ] || { echo "buildkitd (OCI worker) needs root here" >&2; exit 1; }
  start=$SECONDS
  BK=$(bash "$ROOT/.ci/buildkit/build.sh")
  built=$((SECONDS-start))
  mkdir -p "$W"
  "$BK/bin/buildkitd" --root "$W/root" --addr "unix://$W/buildkitd.sock" \
    --containerd-worker=false --oci-worker-gc=false > "$W/log" 2>&1 & echo $! > "$W/pid"
  start=$SECONDS
  for i in $(seq 200); do
    "$BK/bin/buildctl" --addr "unix://$W/buildkitd.sock" debug workers >/dev/null 2>&1 && break
    kill -0 "$(cat "$W/pid")" 2>/dev/null || { cat "$W/log" >&2; exit 1; }
    sleep 0.05
  done
  "$BK/bin/buildctl" --addr "unix://$W/buildkitd.sock" debug workers >/dev/null || { cat "$W/log" >&2; exit 1; }
  export_env FAIRING_TEST_BUILDKIT_ADDR "unix://$W/buildkitd.sock"
  export_env FAIRING_TEST_BUILDKITD "$BK/bin/buildkitd"
  export_env FAIRING_TEST_BUILDCTL "$BK/bin/buildctl"
  log "buildkitd up on unix://$W/buildkitd.sock (binaries ready in ${built}s, daemon answered in $((SECONDS-start))s)"
  ;;
down)
  stop_pid "$W/pid"
  if [ -d "$W" ]; then
    unmount_under "$W"
    rm -rf "$W"
  fi
  ;;
esac
