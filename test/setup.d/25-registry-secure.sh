#!/usr/bin/env bash
# Two more real docker-registry instances on 127.0.0.1, for the security tests (test/reliability):
#   FAIRING_TEST_AUTH_REGISTRY       127.0.0.1:PORT, plain HTTP, htpasswd (bcrypt) basic auth
#   FAIRING_TEST_AUTH_USER           its user
#   FAIRING_TEST_AUTH_PASSWORD       its password (random per run)
#   FAIRING_TEST_TLS_REGISTRY        127.0.0.1:PORT, HTTPS with a certificate signed by a throwaway CA
#                                    (SAN IP:127.0.0.1, DNS:localhost), no auth
#   FAIRING_TEST_TLS_CA              that CA's certificate (PEM); no system trust store holds it
# Ports: FAIRING_TEST_AUTH_REGISTRY_PORT / FAIRING_TEST_TLS_REGISTRY_PORT, else free ones are picked.
# up: install (docker-registry, apache2-utils for htpasswd, openssl), start, export.
# down: stop both and drop their storage, keys and passwords.
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
W=$FAIRING_TEST_WORK/registry-secure

# free_port : a TCP port nothing listens on at 127.0.0.1 (from the ephemeral-free range 20000-29999).
free_port() {
  local p i
  for i in $(seq 200); do
    p=$((20000 + RANDOM % 10000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
  done
  echo "no free port found" >&2; return 1
}

# start NAME PORT EXTRA_HTTP_YAML AUTH_YAML : start a registry with its own storage, wait until it answers.
start() {
  local name=$1 port=$2 http_extra=$3 auth=$4 scheme=http curl_opts=()
  mkdir -p "$W/$name/storage"
  cat > "$W/$name/config.yml" <<YML
version: 0.1
log: {level: warn, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $W/$name/storage}, delete: {enabled: true}, maintenance: {uploadpurging: {enabled: false}}}
http: {addr: 127.0.0.1:$port, secret: fairing-test-not-secret$http_extra}
$auth
YML
  if [ -n "$http_extra" ]; then scheme=https; curl_opts=(--cacert "$W/ca.pem"); fi
  docker-registry serve "$W/$name/config.yml" > "$W/$name/log" 2>&1 & echo $! > "$W/$name/pid"
  local i
  for i in $(seq 200); do
    # 200 (open) or 401 (auth required) both mean it is serving
    code=$(curl -sS -o /dev/null -w '%{http_code}' "${curl_opts[@]}" "$scheme://127.0.0.1:$port/v2/" 2>/dev/null || true)
    case "$code" in 200|401) return 0 ;; esac
    sleep 0.05
  done
  cat "$W/$name/log" >&2
  return 1
}

case "$1" in
up)
  need_pkgs docker-registry apache2-utils openssl curl
  rm -rf "$W"
  mkdir -p "$W"
  chmod 700 "$W"

  # --- htpasswd registry ---
  user=fairing-tester
  password=$(openssl rand -hex 18)
  htpasswd -bBc "$W/htpasswd" "$user" "$password" 2>/dev/null
  aport=${FAIRING_TEST_AUTH_REGISTRY_PORT:-$(free_port)}
  start auth "$aport" "" "auth: {htpasswd: {realm: fairing-test, path: $W/htpasswd}}"

  # --- TLS registry: a throwaway CA and a server certificate it signs ---
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=fairing test CA" \
    -keyout "$W/ca.key" -out "$W/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout "$W/server.key" -out "$W/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' > "$W/server.ext"
  openssl x509 -req -in "$W/server.csr" -CA "$W/ca.pem" -CAkey "$W/ca.key" -CAcreateserial -days 2 \
    -extfile "$W/server.ext" -out "$W/server.pem" 2>/dev/null
  tport=${FAIRING_TEST_TLS_REGISTRY_PORT:-$(free_port)}
  start tls "$tport" ", tls: {certificate: $W/server.pem, key: $W/server.key}" ""

  export_env FAIRING_TEST_AUTH_REGISTRY "127.0.0.1:$aport"
  export_env FAIRING_TEST_AUTH_USER "$user"
  export_env FAIRING_TEST_AUTH_PASSWORD "$password"
  export_env FAIRING_TEST_TLS_REGISTRY "127.0.0.1:$tport"
  export_env FAIRING_TEST_TLS_CA "$W/ca.pem"
  log "htpasswd registry on 127.0.0.1:$aport, TLS registry on 127.0.0.1:$tport"
  ;;
down)
  for n in auth tls; do stop_pid "$W/$n/pid"; done
  rm -rf "$W"
  ;;
esac
