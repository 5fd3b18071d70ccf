# Shared helpers for test/run.sh and the scripts in test/setup.d. Sourced, not run.

log() { echo "[test $(date +%T)] $*" >&2; }

# need_pkgs PKG... : install the Debian packages that are missing (apt-get update at most once per run).
need_pkgs() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  if [ ! -f "${FAIRING_TEST_WORK:-/tmp}/.apt-updated" ]; then
    apt-get update -qq >&2 && touch "${FAIRING_TEST_WORK:-/tmp}/.apt-updated"
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
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
