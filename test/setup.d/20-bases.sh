#!/usr/bin/env bash
# Base images for the tests, made offline (Debian packages only: no Docker Hub) and pushed to the
# registry of 10-registry.sh ($FAIRING_TEST_REGISTRY).
#   FAIRING_TEST_BUSYBOX_BASE         OCI image, linux/amd64: Debian's busybox-static, applet links
#                                     in /bin, /etc/passwd with root, /tmp 1777, PATH, Cmd /bin/sh
#   FAIRING_TEST_BUSYBOX_DOCKER_BASE  the same files with Docker schema-2 media types
#   FAIRING_TEST_MULTIARCH_BASE       OCI image index: linux/amd64 (the busybox base) + linux/arm64/v8
#   FAIRING_TEST_PYTHON_BASE          Debian minbase + python3 + python3-pip, one layer, Cmd python3
#   FAIRING_TEST_NOTEBOOK_BASE        the python base + one layer with nbconvert, nbclient, ipykernel
# The Debian layers take minutes to build (images/base/debian.sh): they are cached under
# ${XDG_CACHE_HOME:-$HOME/.cache}/fairing-test/, keyed on that script, so later runs only push them.
# up: build (or take from the cache), push, export.  down: remove the scratch dir.
set -euo pipefail
shopt -s inherit_errexit
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
. test/lib.sh
W=$FAIRING_TEST_WORK/bases
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/fairing-test
# the mtime of every entry in the busybox layers (the Debian layers use the same, see debian.sh)
EPOCH=1686355200
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

# debian_mirror : the host's Debian mirror (first .../debian URI in its apt sources), which
# FAIRING_TEST_DEBIAN_MIRROR overrides.
debian_mirror() {
  local m
  m=$(grep -hsE '^[[:space:]]*URIs:[[:space:]]*[^[:space:]]+/debian/?[[:space:]]*$' /etc/apt/sources.list.d/*.sources | awk '{print $2; exit}')
  [ -n "$m" ] || m=$(grep -hsE '^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?[^[:space:]]+/debian/?[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
    sed -E 's/^[[:space:]]*deb[[:space:]]+(\[[^]]*\][[:space:]]+)?([^[:space:]]+).*/\2/' | head -1)
  echo "${m:-http://deb.debian.org/debian}"
}
export FAIRING_TEST_DEBIAN_MIRROR=${FAIRING_TEST_DEBIAN_MIRROR:-$(debian_mirror)}

# busybox_rootfs DIR BUSYBOX : a root filesystem with BUSYBOX as /bin/busybox and every applet it
# has (as listed by the host's busybox-static, the same version) linked in /bin.
busybox_rootfs() {
  local r=$1 a
  rm -rf "$r"
  mkdir -p "$r/bin" "$r/etc" "$r/root" "$r/tmp"
  install -m 0755 "$2" "$r/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$r/bin/$a"; done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  chmod 0755 "$r/bin" "$r/etc"
  chmod 0644 "$r/etc/passwd" "$r/etc/group"
  chmod 0700 "$r/root"
  chmod 1777 "$r/tmp"
}

# layer_tar DIR OUT.tar : DIR's contents as a deterministic tar (sorted, root-owned, one mtime).
layer_tar() {
  local out
  out=$(realpath -m "$2")
  (cd "$1" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | LC_ALL=C sort |
    LC_ALL=C tar --format=gnu --sort=name --numeric-owner --owner=0 --group=0 --mtime="@$EPOCH" -cf "$out" -T -)
}

# arm64_busybox OUT : Debian's busybox-static for arm64, with apt in a private state dir (the host's
# apt configuration and architectures are left alone). The binary is cached per package version.
arm64_busybox() {
  local out=$1 a=$W/apt-arm64 ver c
  ver=$(dpkg-query -W -f '${Version}' busybox-static)
  c=$CACHE/busybox-arm64-${ver//[^A-Za-z0-9.+-]/_}
  if [ ! -s "$c" ]; then
    rm -rf "$a"
    mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/etc/parts" "$a/etc/sources.list.d" "$a/deb"
    echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $FAIRING_TEST_DEBIAN_MIRROR ${FAIRING_TEST_DEBIAN_SUITE:-bookworm} main" >"$a/etc/sources.list"
    local opts=(-o "Dir::Etc::SourceList=$a/etc/sources.list" -o "Dir::Etc::SourceParts=$a/etc/sources.list.d"
      -o "Dir::Etc::Parts=$a/etc/parts" -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache"
      -o "Dir::State::status=/dev/null" -o APT::Architecture=arm64 -o APT::Architectures::=arm64
      -o Acquire::Languages=none -o APT::Sandbox::User=root)
    apt-get "${opts[@]}" update -qq >&2 || return 1
    (cd "$a/deb" && { apt-get "${opts[@]}" download "busybox-static:arm64=$ver" || apt-get "${opts[@]}" download busybox-static:arm64; } >&2) || return 1
    dpkg-deb -x "$a"/deb/busybox-static_*_arm64.deb "$a/x" || return 1
    file -b "$a/x/bin/busybox" | grep -q 'ARM aarch64' || { echo "not an arm64 binary: $(file -b "$a/x/bin/busybox")" >&2; return 1; }
    mkdir -p "$CACHE"
    cp "$a/x/bin/busybox" "$c.tmp.$$" && mv "$c.tmp.$$" "$c"
    rm -rf "$a"
  fi
  cp "$c" "$out"
}

# debian_layers : print the cache dir holding python.tar.gz and notebook.tar.gz, building it first
# if needed (one builder at a time per key; the dir appears atomically when complete).
debian_layers() {
  local key c
  key=$(sha256sum images/base/debian.sh | cut -c1-16)
  c=$CACHE/debian-$key
  mkdir -p "$CACHE"
  (
    flock 9
    if [ ! -f "$c/notebook.tar.gz" ]; then
      log "building the Debian python/notebook layers (minutes; cached in $c)"
      need_pkgs debootstrap rsync file
      rm -rf "$c.tmp"
      trap 'rm -rf "$c.tmp"' EXIT
      trap 'exit 130' INT TERM HUP
      bash images/base/debian.sh "$c.tmp" "$W/debian" >&2
      mv "$c.tmp" "$c"
    fi
  ) 9>"$CACHE/.debian-$key.lock" || return 1
  touch "$c"
  # drop layer sets of other recipes not used for two weeks
  find "$CACHE" -maxdepth 1 \( -name 'debian-*' -o -name '.debian-*.lock' \) ! -name "debian-$key" ! -name ".debian-$key.lock" \
    -mtime +14 -exec rm -rf {} + 2>/dev/null || true
  echo "$c"
}

case "${1:-}" in
up)
  : "${FAIRING_TEST_REGISTRY:?run 10-registry.sh first (it exports FAIRING_TEST_REGISTRY)}"
  need_pkgs busybox-static file skopeo umoci runc
  start=$SECONDS
  rm_tree "$W"
  mkdir -p "$W"
  CRANE=$(crane_bin)
  # crane logs every blob: keep quiet unless it fails
  crane() {
    local out
    out=$("$CRANE" "$@" 2>&1) || { echo "crane $*: $out" >&2; return 1; }
  }
  R=$FAIRING_TEST_REGISTRY

  busybox_rootfs "$W/bb" /bin/busybox
  layer_tar "$W/bb" "$W/busybox.tar"
  BB=$R/base/busybox:1
  crane append --oci-empty-base -f "$W/busybox.tar" -t "$BB"
  crane mutate "$BB" --set-platform linux/amd64 -e "$PATH_ENV" --cmd /bin/sh -t "$BB"
  BBD=$R/base/busybox-docker:1
  crane append -f "$W/busybox.tar" -t "$BBD"
  crane mutate "$BBD" --set-platform linux/amd64 -e "$PATH_ENV" --cmd /bin/sh -t "$BBD"

  ARM=$R/base/busybox-arm64:1
  if arm64_busybox "$W/busybox-arm64"; then
    busybox_rootfs "$W/bb-arm64" "$W/busybox-arm64"
    layer_tar "$W/bb-arm64" "$W/busybox-arm64.tar"
    crane append --oci-empty-base -f "$W/busybox-arm64.tar" -t "$ARM"
    crane mutate "$ARM" --set-platform linux/arm64/v8 -e "$PATH_ENV" --cmd /bin/sh -t "$ARM"
  else
    # only the index's structure matters to the tests (nothing runs the arm64 image)
    log "WARNING: could not get Debian's busybox-static:arm64; the arm64 image gets a PLACEHOLDER layer"
    mkdir -p "$W/placeholder"
    echo "placeholder: busybox-static:arm64 could not be downloaded; this image does not run" >"$W/placeholder/PLACEHOLDER"
    layer_tar "$W/placeholder" "$W/placeholder.tar"
    crane append --oci-empty-base -f "$W/placeholder.tar" -t "$ARM"
    crane mutate "$ARM" --set-platform linux/arm64/v8 -e "$PATH_ENV" --cmd /bin/sh \
      -a org.opencontainers.image.description=placeholder-layer-does-not-run -t "$ARM"
  fi
  MULTI=$R/base/multiarch:1
  crane index append -m "$BB" -m "$ARM" -t "$MULTI"

  C=$(debian_layers)
  PY=$R/base/python:bookworm
  crane append --oci-empty-base -f "$C/python.tar.gz" -t "$PY"
  crane mutate "$PY" --set-platform linux/amd64 -e "$PATH_ENV" -e LANG=C.UTF-8 --cmd python3 -t "$PY"
  NB=$R/base/notebook:bookworm
  crane append -b "$PY" -f "$C/notebook.tar.gz" -t "$NB"

  export_env FAIRING_TEST_BUSYBOX_BASE "$BB"
  export_env FAIRING_TEST_BUSYBOX_DOCKER_BASE "$BBD"
  export_env FAIRING_TEST_MULTIARCH_BASE "$MULTI"
  export_env FAIRING_TEST_PYTHON_BASE "$PY"
  export_env FAIRING_TEST_NOTEBOOK_BASE "$NB"
  log "bases pushed in $((SECONDS - start))s: $BB $BBD $MULTI $PY $NB"
  ;;
down)
  rm_tree "$W"
  ;;
*)
  echo "usage: $0 up|down" >&2
  exit 2
  ;;
esac
