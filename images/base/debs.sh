#!/usr/bin/env bash
# debs.sh ARCH DEST NAME=VERSION... : unpack Debian packages for ARCH (amd64, arm64, ...) into DEST/NAME/.
# They are downloaded with a private apt state (the host's sources and keyrings, any architecture; the host's
# own apt state and architectures are left alone) and kept in ${XDG_CACHE_HOME:-~/.cache}/fairing-images/debs,
# so a machine downloads each package version once. When the mirror no longer has VERSION, the current
# version is taken and a warning says so (the images' digests then change).
set -euo pipefail
ARCH=${1:?usage: debs.sh ARCH DEST NAME=VERSION...}
DEST=${2:?usage: debs.sh ARCH DEST NAME=VERSION...}
shift 2
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/fairing-images
A=$CACHE/apt-$ARCH
mkdir -p "$CACHE/debs" "$DEST"
opts=(-o "Dir::State::Lists=$A/lists" -o "Dir::Cache=$A/cache" -o "Dir::State::status=/dev/null"
  -o "APT::Architecture=$ARCH" -o "APT::Architectures::=$ARCH" -o Acquire::Languages=none -o APT::Sandbox::User=root
  -o Debug::NoLocking=1)
updated=""
update() {
  [ -n "$updated" ] && return 0
  mkdir -p "$A/lists/partial" "$A/cache/archives/partial"
  apt-get "${opts[@]}" update -qq >&2
  updated=1
}
for spec in "$@"; do
  pkg=${spec%%=*} ver=${spec#*=}
  key=${pkg}_${ver//[^A-Za-z0-9.+~-]/_}_$ARCH
  deb=$(ls "$CACHE/debs/$key"*.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    update
    tmp=$(mktemp -d "$CACHE/dl.XXXXXX")
    if ! (cd "$tmp" && apt-get "${opts[@]}" download "$pkg:$ARCH=$ver" >&2 2>"$tmp/err"); then
      echo "debs.sh: WARNING: $pkg $ver ($ARCH) is not on the mirror any more: taking the current version (update images/base/packages)" >&2
      (cd "$tmp" && apt-get "${opts[@]}" download "$pkg:$ARCH" >&2)
    fi
    f=$(ls "$tmp"/*.deb)
    deb=$CACHE/debs/${key}__$(basename "$f")
    mv "$f" "$deb"
    rm -rf "$tmp"
  fi
  rm -rf "${DEST:?}/$pkg"
  dpkg-deb -x "$deb" "$DEST/$pkg"
  # the version really unpacked, for the image's labels
  echo "$pkg $(dpkg-deb -f "$deb" Version)"
done
