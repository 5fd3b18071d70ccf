#!/usr/bin/env bash
# down.sh RUNDIR : stop what up.sh started and leave nothing behind:
#   processes (by recorded PID, plus the shims and container processes our containerd started),
#   mounts under RUNDIR, the CNI bridge, kubepods cgroups, and the host paths containerd/kubelet/CNI hard-code.
# KILL=1 skips graceful shutdown. Keeps RUNDIR's logs and configs (KEEP=0 removes RUNDIR). Safe to run twice,
# and on the leftovers of a killed run.
R=$(cd "${1:?rundir}" 2>/dev/null && pwd) || exit 0
t0=$(date +%s%N); ms() { echo $(( ($(date +%s%N)-$1)/1000000 )); }
say() { echo "[down] $*" >&2; }
stop() { # name : SIGTERM (SIGKILL with KILL=1), wait up to 10 s, then SIGKILL
  local f=$R/$1.pid p s st i; [ -f "$f" ] || return 0; p=$(cat "$f"); s=$(date +%s%N)
  # only a process that still runs our binary with our run dir is ours (PIDs get reused)
  if grep -qaF -- "$R" /proc/"$p"/cmdline 2>/dev/null; then
    if [ "${KILL:-0}" = 1 ]; then kill -9 "$p" 2>/dev/null; else kill "$p" 2>/dev/null; fi
    for i in $(seq 100); do st=$(awk '{print $3}' /proc/"$p"/stat 2>/dev/null) || break; [ "$st" = Z ] && break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
    say "$1 stopped in $(ms "$s")ms"
  fi
  rm -f "$f"
}
# 1. kubelet first, so that it does not restart what we remove next
stop kubelet
# 2. pods: containerd's own view (kill and delete every task and container of the k8s.io namespace)
SOCK=$R/containerd/containerd.sock
if [ -S "$SOCK" ] && [ -f "$R/containerd.pid" ]; then
  s=$(date +%s%N)
  CTR=$(dirname "$(readlink -f /proc/"$(cat "$R/containerd.pid")"/exe 2>/dev/null || echo /nonexistent/containerd)")/ctr
  if [ -x "$CTR" ]; then
    for id in $(timeout 20 "$CTR" -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do timeout 10 "$CTR" -a "$SOCK" -n k8s.io tasks kill -s SIGKILL "$id" >/dev/null 2>&1; done
    for id in $(timeout 20 "$CTR" -a "$SOCK" -n k8s.io tasks ls -q 2>/dev/null); do timeout 10 "$CTR" -a "$SOCK" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1; done
    for id in $(timeout 20 "$CTR" -a "$SOCK" -n k8s.io containers ls -q 2>/dev/null); do timeout 10 "$CTR" -a "$SOCK" -n k8s.io containers delete "$id" >/dev/null 2>&1; done
    say "pods removed in $(ms "$s")ms"
  fi
fi
# 3. containerd
stop containerd
# 4. anything our containerd left running: shims (their cmdline names our socket) and container processes (kubepods cgroups)
for d in /proc/[0-9]*; do
  grep -qaF -- "$SOCK" "$d/cmdline" 2>/dev/null && { say "killing leftover shim ${d#/proc/}"; kill -9 "${d#/proc/}" 2>/dev/null; }
done
pids=$(for id in $(ls "$R/containerd/state/io.containerd.runtime.v2.task/k8s.io" 2>/dev/null); do   # our sandboxes and containers only
  find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods -type d -name "$id" -exec cat {}/cgroup.procs \; 2>/dev/null; done | sort -u)
for p in $pids; do say "killing leftover container process $p"; kill -9 "$p" 2>/dev/null; done
[ -n "$pids" ] && sleep 0.2
# 5. mounts under RUNDIR (rootfs overlays, shm, netns, kubelet volumes, kubelet's rshared root-dir bind), deepest first
for i in 1 2 3; do
  m=$(awk -v r="$R/" 'index($5, r) == 1 {print $5}' /proc/self/mountinfo | sort -r | uniq)
  [ -z "$m" ] && break
  for x in $m; do umount "$x" 2>/dev/null || umount -l "$x" 2>/dev/null; done
done
left=$(awk -v r="$R/" 'index($5, r) == 1' /proc/self/mountinfo | wc -l); [ "$left" = 0 ] || say "WARNING: $left mounts left under $R"
# 6. CNI bridge (pod veths die with their netns)
ip link show cibr0 >/dev/null 2>&1 && ip link del cibr0 && say "deleted cibr0"
# 7. kubepods cgroups (the kubelet never removes them), deepest first, in every v1 hierarchy (or the v2 tree)
for c in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods.slice /sys/fs/cgroup/kubepods.slice; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} + 2>/dev/null
  [ -d "$c" ] && say "WARNING: could not remove $c"
done
# 8. host paths containerd/kubelet/CNI hard-code: remove what was not there before up.sh
if [ -f "$R/host-paths.before" ]; then
  for l in /var/log/containers/*; do [ -L "$l" ] && case "$(readlink "$l")" in "$R"/*) rm -f "$l";; esac; done
  for p in /run/containerd/s/* /var/lib/cni/results/* /var/lib/kubelet/device-plugins/*; do
    [ -e "$p" ] || [ -L "$p" ] || continue; grep -qxF "$p" "$R/host-paths.before" || rm -f "$p"; done
  for d in /run/containerd/s /run/containerd/fifo /run/containerd/runc /run/containerd /var/log/containers /var/lib/kubelet/device-plugins \
           /var/lib/kubelet /var/lib/cni/results /var/lib/cni; do
    [ -d "$d" ] && ! grep -qxF "$d" "$R/host-paths.before" && rmdir "$d" 2>/dev/null; done
fi
# 9. control plane
for n in kube-scheduler kube-controller-manager kube-apiserver etcd; do stop $n; done
# 10. state (keep logs unless KEEP=0)
if [ "${KEEP:-1}" = 0 ]; then rm -rf "$R"; else rm -rf "$R/containerd/root" "$R/containerd/state" "$R/kubelet" "$R/etcd-data" "$R/cni" "$R/pod-logs"; fi
say "total $(ms "$t0")ms"
