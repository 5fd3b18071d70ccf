# shellcheck shell=bash
# Shared helpers for test/run.sh and the scripts in test/setup.d. Sourced, not run.

log() { echo "[test $(date +%T)] $*" >&2; }

# need_pkgs PKG... : install the Debian packages that are missing (apt-get update at most once per run).
need_pkgs() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  # Several test runs (CI jobs, developers' worktrees) may share the machine: take turns, and
  # wait for dpkg's own lock too (another apt may be running outside our scripts).
  (
    flock 9
    if [ ! -f "${FAIRING_TEST_WORK:-/tmp}/.apt-updated" ]; then
      apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 && touch "${FAIRING_TEST_WORK:-/tmp}/.apt-updated"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >&2
  ) 9>/tmp/fairing-test-apt.lock
}

# export_env KEY VALUE : make KEY=VALUE visible to the tests (and to later setup scripts).
export_env() {
  printf 'export %s=%q\n' "$1" "$2" >> "$FAIRING_TEST_WORK/env.sh"
  export "$1=$2"
}

# wait_http URL [TRIES] : poll until URL answers 2xx.
wait_http() {
  local i
  for i in $(seq "${2:-200}"); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
  return 1
}


# stop_pid FILE : SIGTERM the process whose PID is in FILE, wait up to 10 s, then SIGKILL.
stop_pid() {
  local f=$1 p i st
  [ -f "$f" ] || return 0
  p=$(cat "$f")
  kill "$p" 2>/dev/null || true
  for i in $(seq 100); do st=$(awk '{print $3}' /proc/"$p"/stat 2>/dev/null) || break; [ "$st" = Z ] && break; sleep 0.1; done
  kill -9 "$p" 2>/dev/null || true
  rm -f "$f"
}

# crane_bin : print the path of crane at the version go.mod pins (its `tool` line), built into
# $FAIRING_TEST_WORK/bin (0.6 s when the Go cache has it, 25-40 s cold). Same binary as `go tool crane`,
# without go's start-up cost on every call.
crane_bin() {
  local root bin
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  bin=${FAIRING_TEST_WORK:-/tmp/fairing-test}/bin/crane
  (cd "$root" && go build -o "$bin" github.com/google/go-containerregistry/cmd/crane) >&2 || return 1
  echo "$bin"
}

# unmount_under DIR : unmount everything mounted at or below DIR (deepest first; lazily, so a busy
# mount cannot block a cleanup).
unmount_under() {
  local d m
  d=$(realpath -m "$1")
  for m in $(findmnt -rn -o TARGET | awk -v d="$d" '$0 == d || index($0, d "/") == 1' | sort -r); do
    umount -l "$m" 2>/dev/null || true
  done
}

# rm_tree DIR : remove DIR safely even if something (a chroot's /proc, a bind-mounted /dev) is still
# mounted below it: unmount first, and never cross into another file system.
rm_tree() {
  [ -e "$1" ] || return 0
  unmount_under "$1"
  rm -rf --one-file-system "$1"
}
