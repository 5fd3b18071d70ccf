#!/usr/bin/env bash
# up.sh BINDIR RUNDIR : start a throw-away single-node Kubernetes cluster on 127.0.0.1:
#   etcd, kube-apiserver (RBAC on), kube-controller-manager, kube-scheduler, containerd v2 + runc + bridge CNI,
#   and a real kubelet (node "localhost"). Recipe and pitfalls: shared/reference/real-parts.md, Parts 2 and 3.
#   env: REGISTRY (host:port of the registry holding REGISTRY/k8s/pause:3.10.2; pulled over plain http)
#        CNI_BIN (default /usr/lib/cni)  WAIT_READY (seconds, default 120)
#        ETCD_PORT(23790) ETCD_PEER_PORT(23800) API_PORT(26443) KCM_PORT(30257) SCHED_PORT(30259)
#        KUBELET_PORT(30250) KUBELET_HEALTHZ_PORT(30248)
# writes RUNDIR/admin.kubeconfig (system:masters, client cert) and RUNDIR/dev.kubeconfig (token user "dev",
# group "devs", no rights). One cluster per machine: cibr0, 10.244.0.0/24, /kubepods cgroups and the ports are
# machine-wide. Run down.sh RUNDIR first to clear a previous run's leftovers.
set -euo pipefail
B=$(cd "${1:?bindir}" && pwd); mkdir -p "${2:?rundir}"; R=$(cd "$2" && pwd); P=$R/pki; HERE=$(cd "$(dirname "$0")" && pwd)
REGISTRY=${REGISTRY:?set REGISTRY=host:port of the registry with the pause image}
NODE_NAME=localhost
EP=${ETCD_PORT:-23790} EPP=${ETCD_PEER_PORT:-23800} AP=${API_PORT:-26443} KP=${KCM_PORT:-30257} SP=${SCHED_PORT:-30259}
KLP=${KUBELET_PORT:-30250} KHP=${KUBELET_HEALTHZ_PORT:-30248}
CNI_BIN=${CNI_BIN:-/usr/lib/cni}
ts() { echo "[up $(date +%T.%3N)] $*" >&2; }
for p in $EP $EPP $AP $KP $SP $KLP $KHP; do ! (exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null || { echo "port $p busy: another cluster running? (down.sh RUNDIR)" >&2; exit 1; }; done
if ip link show cibr0 >/dev/null 2>&1; then
  # a live cluster has a kubelet or containerd of ours; without one, the bridge is a leftover of a killed run
  # (whose RUNDIR we may not know): remove it rather than refuse to start
  if pgrep -f -- '--config [^ ]*/containerd/config.toml' >/dev/null || pgrep -x kubelet >/dev/null; then
    echo "bridge cibr0 exists and a kubelet or containerd runs: another cluster on this machine? (down.sh RUNDIR)" >&2; exit 1
  fi
  ip link del cibr0 && ts "removed stale bridge cibr0 (left by a killed run)"
fi

# --- PKI: CA, serving certs, client certs, service-account key pair, static token ---
rm -rf "$P"; mkdir -p "$P"; (
cd "$P"
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj "/CN=fairing-ci-ca" 2>/dev/null
sign() { openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -subj "$2" 2>/dev/null |
  openssl x509 -req -CA ca.crt -CAkey ca.key -set_serial "0x$(openssl rand -hex 16)" -days 3650 -out "$1.crt" -extfile <(printf '%b' "$3") 2>/dev/null; }
# (the keys are generated in parallel: -set_serial, not -CAcreateserial, which would race on ca.srl)
sign apiserver "/CN=kube-apiserver" "subjectAltName=IP:127.0.0.1,DNS:localhost,IP:10.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc\nextendedKeyUsage=serverAuth\n" &
sign admin "/O=system:masters/CN=ci-admin" "extendedKeyUsage=clientAuth\n" &
sign kcm "/CN=system:kube-controller-manager" "extendedKeyUsage=clientAuth\n" &
sign sched "/CN=system:kube-scheduler" "extendedKeyUsage=clientAuth\n" &
sign node "/O=system:nodes/CN=system:node:$NODE_NAME" "extendedKeyUsage=clientAuth\n" &
sign kubelet "/CN=$NODE_NAME" "subjectAltName=DNS:$NODE_NAME,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n" &
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth\n" &
(openssl genrsa -out sa.key 2048 2>/dev/null; openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null) &
wait
for c in apiserver admin kcm sched node kubelet apiserver-kubelet-client; do [ -s "$c.crt" ] || { echo "PKI: $c.crt not written" >&2; exit 1; }; done
echo 'devtoken,dev,1001,"devs"' > tokens.csv
chmod 600 *.key tokens.csv )
kc() { # name user-yaml
  printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: ci\n  cluster:\n    server: https://127.0.0.1:%s\n    certificate-authority: %s/ca.crt\nusers:\n- name: u\n  user:\n%b\ncontexts:\n- name: ci\n  context: {cluster: ci, user: u}\ncurrent-context: ci\n' "$AP" "$P" "$2" > "$R/$1.kubeconfig"; }
for u in admin kcm sched node; do kc $u "    client-certificate: $P/$u.crt\n    client-key: $P/$u.key"; done
kc dev "    token: devtoken"
ts "pki+kubeconfigs written"

# --- containerd (started early: it needs no apiserver) ---
# host paths that containerd/kubelet/CNI hard-code: remember what existed, so down.sh removes only what we added
ls -d /run/containerd /run/containerd/* /run/containerd/s/* /var/lib/kubelet /var/lib/kubelet/* /var/log/containers \
  /var/lib/cni /var/lib/cni/results /var/lib/cni/results/* 2>/dev/null > "$R/host-paths.before" || true
mkdir -p "$R/containerd/certs.d/$REGISTRY" "$R/cni/net.d" "$R/kubelet" "$R/pod-logs"
sed -e "s|@R@|$R|g" -e "s|@CNIBIN@|$CNI_BIN|g" -e "s|@REGISTRY@|$REGISTRY|g" "$HERE/containerd-v2.toml.in" > "$R/containerd/config.toml"
printf 'server = "http://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve", "push"]\n' "$REGISTRY" "$REGISTRY" > "$R/containerd/certs.d/$REGISTRY/hosts.toml"
sed -e "s|@R@|$R|g" "$HERE/cni-bridge.conflist.in" > "$R/cni/net.d/10-fairing-ci-pods.conflist"
# the containerd-shim-runc-v2 next to our containerd wins over any other on PATH
PATH="$B:$PATH" "$B/containerd" --config "$R/containerd/config.toml" --log-level warn > "$R/containerd.log" 2>&1 &
echo $! > "$R/containerd.pid"

# --- etcd ---
rm -rf "$R/etcd-data"
"$B/etcd" --name ci --data-dir "$R/etcd-data" \
  --listen-client-urls http://127.0.0.1:$EP --advertise-client-urls http://127.0.0.1:$EP \
  --listen-peer-urls http://127.0.0.1:$EPP --initial-advertise-peer-urls http://127.0.0.1:$EPP \
  --initial-cluster ci=http://127.0.0.1:$EPP --initial-cluster-state new \
  --unsafe-no-fsync --log-level warn > "$R/etcd.log" 2>&1 &
echo $! > "$R/etcd.pid"
for i in $(seq 300); do curl -fsS http://127.0.0.1:$EP/health >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS http://127.0.0.1:$EP/health >/dev/null || { tail -20 "$R/etcd.log" >&2; exit 1; }
ts "etcd healthy"

# --- kube-apiserver (privileged pods allowed, as kubeadm does: in-cluster BuildKit builds need them) ---
"$B/kube-apiserver" --etcd-servers=http://127.0.0.1:$EP \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=$AP \
  --tls-cert-file=$P/apiserver.crt --tls-private-key-file=$P/apiserver.key \
  --client-ca-file=$P/ca.crt --token-auth-file=$P/tokens.csv \
  --service-account-issuer=https://kubernetes.default.svc \
  --service-account-key-file=$P/sa.pub --service-account-signing-key-file=$P/sa.key \
  --service-cluster-ip-range=10.0.0.0/24 --endpoint-reconciler-type=none \
  --authorization-mode=Node,RBAC --cert-dir=$R/apiserver-certs \
  --kubelet-client-certificate=$P/apiserver-kubelet-client.crt --kubelet-client-key=$P/apiserver-kubelet-client.key \
  --kubelet-preferred-address-types=Hostname --enable-admission-plugins=NodeRestriction \
  --allow-privileged=true \
  ${APISERVER_EXTRA_FLAGS:-} > "$R/kube-apiserver.log" 2>&1 &
echo $! > "$R/kube-apiserver.pid"
CURL="curl -fsS --cacert $P/ca.crt --cert $P/admin.crt --key $P/admin.key"
for i in $(seq 600); do
  $CURL https://127.0.0.1:$AP/readyz >/dev/null 2>&1 && break
  kill -0 "$(cat "$R/kube-apiserver.pid")" 2>/dev/null || { tail -30 "$R/kube-apiserver.log" >&2; exit 1; }
  sleep 0.1
done
$CURL https://127.0.0.1:$AP/readyz >/dev/null || { $CURL "https://127.0.0.1:$AP/readyz?verbose" | grep -v ' ok' >&2; exit 1; }
ts "kube-apiserver ready"

# --- kubelet (needs the apiserver; containerd has had a head start) ---
for i in $(seq 300); do [ -S "$R/containerd/containerd.sock" ] && break; sleep 0.1; done
[ -S "$R/containerd/containerd.sock" ] || { tail -30 "$R/containerd.log" >&2; exit 1; }
sed -e "s|@R@|$R|g" -e "s|@KUBELET_PORT@|$KLP|g" -e "s|@KUBELET_HEALTHZ_PORT@|$KHP|g" "$HERE/kubelet-config.yaml.in" > "$R/kubelet-config.yaml"
"$B/kubelet" --config="$R/kubelet-config.yaml" --kubeconfig="$R/node.kubeconfig" --root-dir="$R/kubelet" \
  --hostname-override="$NODE_NAME" ${KUBELET_EXTRA_FLAGS:-} > "$R/kubelet.log" 2>&1 &
echo $! > "$R/kubelet.pid"

# --- kube-controller-manager, kube-scheduler ---
"$B/kube-controller-manager" --kubeconfig=$R/kcm.kubeconfig \
  --authentication-kubeconfig=$R/kcm.kubeconfig --authorization-kubeconfig=$R/kcm.kubeconfig \
  --bind-address=127.0.0.1 --secure-port=$KP --cert-dir=$R/kcm-certs --leader-elect=false \
  --service-account-private-key-file=$P/sa.key --root-ca-file=$P/ca.crt --use-service-account-credentials=true \
  --node-monitor-period=1s --kube-api-qps=200 --kube-api-burst=400 \
  > "$R/kube-controller-manager.log" 2>&1 &
echo $! > "$R/kube-controller-manager.pid"
"$B/kube-scheduler" --kubeconfig=$R/sched.kubeconfig \
  --authentication-kubeconfig=$R/sched.kubeconfig --authorization-kubeconfig=$R/sched.kubeconfig \
  --bind-address=127.0.0.1 --secure-port=$SP --cert-dir=$R/sched-certs --leader-elect=false \
  > "$R/kube-scheduler.log" 2>&1 &
echo $! > "$R/kube-scheduler.pid"

# ready = default ServiceAccount exists (pods can be admitted) and the node is Ready without the not-ready taint
for i in $(seq $(( ${WAIT_READY:-120} * 10 ))); do
  if $CURL https://127.0.0.1:$AP/api/v1/namespaces/default/serviceaccounts/default >/dev/null 2>&1 &&
     n=$($CURL https://127.0.0.1:$AP/api/v1/nodes/$NODE_NAME 2>/dev/null) &&
     grep -q '"type":"Ready","status":"True"' <<<"${n//[[:space:]]/}" && ! grep -q 'not-ready' <<<"$n"; then break; fi
  kill -0 "$(cat "$R/kubelet.pid")" 2>/dev/null || { tail -40 "$R/kubelet.log" >&2; exit 1; }
  sleep 0.1
done
$CURL https://127.0.0.1:$AP/api/v1/namespaces/default/serviceaccounts/default >/dev/null || { echo "controllers not ready" >&2; exit 1; }
n=$($CURL https://127.0.0.1:$AP/api/v1/nodes/$NODE_NAME) || { echo "node $NODE_NAME not registered" >&2; tail -20 "$R/kubelet.log" >&2; exit 1; }
grep -q '"type":"Ready","status":"True"' <<<"${n//[[:space:]]/}" && ! grep -q 'not-ready' <<<"$n" || { echo "node $NODE_NAME not Ready:" >&2; grep -A3 '"type": "Ready"' <<<"$n" >&2; exit 1; }
ts "controllers + node $NODE_NAME ready"
