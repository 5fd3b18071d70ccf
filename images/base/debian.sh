#!/usr/bin/env bash
# Builds the root filesystems of the Python test bases from Debian packages (needs only the Debian
# mirror, no image registry), as deterministic gzip layer tarballs:
#   OUT/python.tar.gz    debootstrap --variant=minbase SUITE + python3, python3-pip: the whole rootfs
#   OUT/notebook.tar.gz  what python3-nbconvert, -nbclient, -ipykernel add on top of it (a diff
#                        layer with whiteouts), so the notebook base is the python base + one layer
# usage: debian.sh OUT WORK   (run as root; WORK is scratch space, removed at the end)
#
# test/setup.d/20-bases.sh caches OUT keyed on this file's hash: edit it and the layers are rebuilt.
# The layers are deterministic: entries sorted by name, numeric owners, one fixed mtime, gzip -n,
# per-run files (logs, apt lists, shadow dates, hostname) dropped or pinned, .pyc files hash-based
# (two independent builds gave bit-identical layers). What they hold still follows the mirror's
# package versions of the day: the cache is what keeps base digests stable across mirror updates.
set -euo pipefail
OUT=${1:?usage: debian.sh OUT WORK}
WORK=${2:?usage: debian.sh OUT WORK}
case $(realpath -m "$WORK") in /) echo "debian.sh: WORK must not be /" >&2; exit 2 ;; esac
SUITE=${FAIRING_TEST_DEBIAN_SUITE:-bookworm}
MIRROR=${FAIRING_TEST_DEBIAN_MIRROR:-http://deb.debian.org/debian}
PYTHON_PKGS=python3,python3-pip
NOTEBOOK_PKGS="python3-nbconvert python3-nbclient python3-ipykernel"
# 2023-06-10T00:00:00Z, the day Debian 12 was released: the mtime of every entry in the layers.
EPOCH=1686355200

log() { echo "[debian.sh $(date +%T)] $*" >&2; }

A=$WORK/python   # rootfs of the python base
B=$WORK/notebook # rootfs of the notebook base (A + notebook packages)
D=$WORK/diff     # what B adds to A, as an image layer

# Debootstrap and our chroot mount /proc and friends under WORK: unmount them on every path (deepest
# first, lazily so that a busy mount cannot keep us from finishing), then drop WORK.
unmount_all() {
  local m
  for m in $(findmnt -rn -o TARGET | grep -F "$WORK/" | sort -r); do umount -l "$m" 2>/dev/null || true; done
}
cleanup() {
  unmount_all
  rm -rf --one-file-system "$WORK"
}
# FAIRING_TEST_KEEP_WORK=1 keeps WORK for a post-mortem (mounts are still undone)
if [ "${FAIRING_TEST_KEEP_WORK:-}" = 1 ]; then trap unmount_all EXIT; else trap cleanup EXIT; fi
trap 'exit 130' INT TERM HUP # so that the EXIT trap runs
cleanup
mkdir -p "$WORK" "$OUT"

log "debootstrap $SUITE from $MIRROR with $PYTHON_PKGS"
if ! debootstrap --variant=minbase --components=main --include="$PYTHON_PKGS" "$SUITE" "$A" "$MIRROR" >"$WORK/debootstrap.log" 2>&1; then
  tail -30 "$WORK/debootstrap.log" >&2
  [ -f "$A/debootstrap/debootstrap.log" ] && tail -30 "$A/debootstrap/debootstrap.log" >&2
  echo "debootstrap failed (is $MIRROR reachable? set FAIRING_TEST_DEBIAN_MIRROR to another mirror)" >&2
  exit 1
fi
unmount_all

# Like Debian's -slim images: no man pages, docs (copyright kept), info, or translations, now and in
# any later apt-get install inside an image built on these bases.
mkdir -p "$A/etc/dpkg/dpkg.cfg.d"
cat >"$A/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/man/*
EOF

log "notebook packages: $NOTEBOOK_PKGS"
cp -a "$A" "$B"
printf '#!/bin/sh\nexit 101\n' >"$B/usr/sbin/policy-rc.d"
chmod 755 "$B/usr/sbin/policy-rc.d"
mount -t proc proc "$B/proc"
# shellcheck disable=SC2086 # word splitting of the package list is meant
if ! chroot "$B" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8 \
  apt-get install -y -q --no-install-recommends $NOTEBOOK_PKGS >"$WORK/notebook.log" 2>&1; then
  tail -30 "$WORK/notebook.log" >&2
  echo "apt-get install $NOTEBOOK_PKGS in the chroot failed" >&2
  exit 1
fi
umount "$B/proc"
rm -f "$B/usr/sbin/policy-rc.d"

# slim, strip what is per-machine or per-run, and make the .pyc files independent of mtimes.
normalize() {
  local r=${1:?}
  rm -rf "$r"/var/cache/apt/archives/*.deb "$r"/var/cache/apt/*.bin "$r"/var/lib/apt/lists/* \
    "$r"/var/cache/debconf/*-old "$r"/var/lib/dpkg/*-old "$r"/var/cache/ldconfig/aux-cache \
    "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/groff/* "$r"/usr/share/lintian/* \
    "$r"/debootstrap "${r:?}"/dev/* "$r"/run/* "$r"/tmp/* "$r"/var/tmp/* \
    "$r"/etc/hostname "$r"/etc/resolv.conf "$r"/etc/machine-id
  find "$r/var/log" -type f -delete
  find "$r/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
  find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$r/etc/hosts"
  # the same image whichever mirror built it
  echo "deb http://deb.debian.org/debian $SUITE main" >"$r/etc/apt/sources.list"
  # the "last password change" day, set to the day of EPOCH
  sed -i -E "s/^([^:]*:[^:]*:)[0-9]+:/\1$((EPOCH / 86400)):/" "$r/etc/shadow"
  rm -f "$r/etc/shadow-" "$r/etc/passwd-" "$r/etc/group-" "$r/etc/gshadow-"
}

# Debian's .pyc files are checked against their source's mtime, which the layer sets to EPOCH: the
# interpreter would find every one stale and recompile on each start. Unchecked-hash pycs do not
# depend on mtimes. Pycs that are already unchecked-hash (flags word 1) are left alone.
hash_pycs() {
  chroot "$1" /usr/bin/python3 - <<'PY'
import glob, importlib.util, py_compile, sys
n = 0
for pyc in glob.glob("/usr/lib/python3*/**/__pycache__/*.pyc", recursive=True):
    with open(pyc, "rb") as f:
        if f.read(8)[4:8] == (1).to_bytes(4, "little"):
            continue
    try:
        src = importlib.util.source_from_cache(pyc)
        py_compile.compile(src, cfile=pyc, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        n += 1
    except (ValueError, FileNotFoundError, py_compile.PyCompileError):
        pass
print(f"recompiled {n} pyc files", file=sys.stderr)
PY
}

normalize "$A"
normalize "$B"
hash_pycs "$A"
# marshal output is not byte-stable across processes: reuse A's pyc wherever the source is the same,
# so that the notebook layer holds only what the notebook packages really add
(cd "$A" && find usr/lib -path '*/__pycache__/*.pyc') | while IFS= read -r pyc; do
  f=${pyc##*/}
  src=${pyc%/__pycache__/*}/${f%%.*}.py
  if [ -f "$B/$pyc" ] && cmp -s "$A/$src" "$B/$src"; then cp -p "$A/$pyc" "$B/$pyc"; fi
done
hash_pycs "$B"
# one mtime everywhere, so that the diff below compares content and modes only
find "$A" "$B" -exec touch -h -d "@$EPOCH" {} +

# pack DIR OUT.tar.gz: one deterministic layer of DIR's contents.
pack() {
  (cd "$1" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort |
    LC_ALL=C tar --format=gnu --sort=name --numeric-owner --mtime="@$EPOCH" -cf - -T -) | gzip -n -6 >"$2.tmp"
  mv "$2.tmp" "$2"
}

log "diff notebook over python"
mkdir -p "$D"
# changed or new files (by content), with their parent directories
rsync -a -H -c --prune-empty-dirs --compare-dest="$A/" "$B/" "$D/"
(cd "$A" && find . | LC_ALL=C sort) >"$WORK/a.lst"
(cd "$B" && find . | LC_ALL=C sort) >"$WORK/b.lst"
# new directories, even empty ones (rsync pruned those)
LC_ALL=C comm -13 "$WORK/a.lst" "$WORK/b.lst" | while IFS= read -r p; do
  if [ -d "$B/$p" ] && [ ! -L "$B/$p" ] && [ ! -e "$D/$p" ]; then
    mkdir -p "$D/$p"
    chmod --reference="$B/$p" "$D/$p"
    chown --reference="$B/$p" "$D/$p"
  fi
done
# removed paths become whiteouts (only the topmost removed path of a subtree)
LC_ALL=C comm -23 "$WORK/a.lst" "$WORK/b.lst" | while IFS= read -r p; do
  parent=$(dirname "$p")
  [ -e "$B/$parent" ] || continue
  mkdir -p "$D/$parent"
  : >"$D/$parent/.wh.$(basename "$p")"
done

log "pack layers"
pack "$A" "$OUT/python.tar.gz"
pack "$D" "$OUT/notebook.tar.gz"
du -sh "$A" "$B" "$D" >&2
ls -l "$OUT" >&2
