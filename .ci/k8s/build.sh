#!/usr/bin/env bash
# build.sh : build the test cluster's binaries from the Go module proxy and print the bin dir.
#   etcd v3.7.3; kube-apiserver, kube-controller-manager, kube-scheduler, kubelet v1.37.2;
#   containerd v2.4.2 (+ containerd-shim-runc-v2, ctr; CGO_ENABLED=0); pause (gcc -static, from the k8s module).
#   WITH_KUBECTL=1 adds kubectl (handy for debugging; the tests do not need it).
# The output dir is keyed on the pinned tools-*/go.{mod,sum} and this script, so a machine that built them
# once skips this step (0 s). Cold: about 7 min on 2 cores (see real-parts.md, Part 3).
# Keep GOCACHE/GOMODCACHE at fixed paths: the build cache is keyed on the module cache path.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
K8S_VERSION=v1.37.2; CONTAINERD_VERSION=v2.4.2
stamp=$(cat "$HERE"/tools-*/go.mod "$HERE"/tools-*/go.sum "$HERE/build.sh" | sha256sum | cut -c1-12)
OUT=${K8S_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/fairing-k8s-bin/$stamp}
want="etcd kube-apiserver kube-controller-manager kube-scheduler kubelet containerd containerd-shim-runc-v2 ctr pause"
[ "${WITH_KUBECTL:-0}" = 1 ] && want="$want kubectl"
missing=""; for b in $want; do [ -x "$OUT/$b" ] || missing="$missing $b"; done
if [ -z "$missing" ]; then echo "$OUT"; exit 0; fi
mkdir -p "$OUT"
t() { local s=$SECONDS; nice -n 10 "$@"; echo "build: ${*: -1} took $((SECONDS-s))s" >&2; }
has() { case "$missing " in *" $1 "*) return 0;; esac; return 1; }
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
mn=${K8S_VERSION#v1.}; mn=${mn%%.*}
LDF="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$mn -X k8s.io/component-base/version.gitTreeState=clean"
# etcd's server module has replace directives, so `go install` refuses it: build it through the wrapper module
has etcd && (cd "$HERE/tools-etcd" && t go build -ldflags "-s -w" -o "$OUT/etcd" go.etcd.io/etcd/server/v3) >&2
# one `go build` for all k8s binaries: they share most packages (kubelet adds ~26 s to the control plane)
pk=""; for b in kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl; do has $b && pk="$pk k8s.io/kubernetes/cmd/$b"; done
[ -n "$pk" ] && (cd "$HERE/tools-k8s" && t go build -ldflags "$LDF" -o "$OUT/" $pk) >&2
if has containerd || has containerd-shim-runc-v2 || has ctr; then
  CP=github.com/containerd/containerd/v2
  # no -trimpath: it would change every cache key and share nothing with the k8s build
  (cd "$HERE/tools-containerd" && export CGO_ENABLED=0 && t go build -tags "urfave_cli_no_docs no_btrfs no_devmapper no_zfs osusergo netgo static_build" \
    -ldflags "-s -w -X $CP/version.Version=$CONTAINERD_VERSION -X $CP/version.Package=$CP" \
    -o "$OUT/" $CP/cmd/containerd $CP/cmd/containerd-shim-runc-v2 $CP/cmd/ctr) >&2
fi
if has pause; then  # the pause program of the k8s release, compiled as upstream does (needs gcc + libc6-dev's libc.a)
  kdir=$(cd "$HERE/tools-k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
  gcc -Os -Wall -Werror -static -DVERSION=v3.10.2-fairing -o "$OUT/pause.tmp" "$kdir/build/pause/linux/pause.c" && strip "$OUT/pause.tmp" && mv "$OUT/pause.tmp" "$OUT/pause"
fi
echo "$OUT"
