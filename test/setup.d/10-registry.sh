#!/usr/bin/env bash
# A real OCI registry (Debian's docker-registry, distribution 2.8) on 127.0.0.1:$FAIRING_TEST_REGISTRY_PORT.
# up: install, start, export FAIRING_TEST_REGISTRY=127.0.0.1:PORT.  down: stop it and drop its storage.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
W=$FAIRING_TEST_WORK/registry
PORT=${FAIRING_TEST_REGISTRY_PORT:-5000}
case "$1" in
up)
  need_pkgs docker-registry curl
  mkdir -p "$W/storage"
  cat > "$W/config.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $W/storage}, delete: {enabled: true}, maintenance: {uploadpurging: {enabled: false}}}
http: {addr: 127.0.0.1:$PORT, secret: fairing-test-not-secret}
YML
  if curl -fsS -o /dev/null "http://127.0.0.1:$PORT/v2/" 2>/dev/null; then
    echo "port $PORT already answers as a registry: stop it or set FAIRING_TEST_REGISTRY_PORT" >&2; exit 1
  fi
  docker-registry serve "$W/config.yml" > "$W/log" 2>&1 & echo $! > "$W/pid"
  wait_http "http://127.0.0.1:$PORT/v2/" || { cat "$W/log" >&2; exit 1; }
  export_env FAIRING_TEST_REGISTRY "127.0.0.1:$PORT"
  log "registry up on 127.0.0.1:$PORT"
  ;;
down)
  stop_pid "$W/pid"
  rm -rf "$W/storage"
  ;;
esac
