#!/usr/bin/env bash
# images/build.sh REGISTRY : build fairing's own images with fairing-builder itself and push them
# (`make images REGISTRY=host:port[/prefix]`):
#   REGISTRY/fairing-base:VERSION     minimal base made offline from Debian packages: busybox-static (a shell
#                                      for debugging), the Mozilla CA bundle, passwd/group with the non-root
#                                      user nonroot (65532), /tmp, HOME=/home/nonroot owned by it
#   REGISTRY/fairing-builder:VERSION  static fairing-builder on the base, user 65532, entrypoint fairing-builder
#   REGISTRY/fairing-submit:VERSION   static fairing-submit on the base, user 65532, entrypoint fairing-submit;
#                                      its default --builder-image/--submit-image are these images
#   REGISTRY/fairing-builder-buildkit:VERSION
#                                      the BuildKit-capable builder: fairing-builder + buildkitd (BuildKit at the
#                                      version go.mod pins, static) + Debian's runc and the libraries it links,
#                                      user root (buildkitd's OCI worker needs it, in a privileged pod)
# Each is an OCI index of PLATFORMS (cross-compiled: CGO_ENABLED=0, -trimpath); each platform is built with
# `fairing-builder build --platform` and pushed as TAG-ARCH, then the index is stitched with the pinned crane.
# Reproducible: pinned Debian packages (images/base/packages), file times clamped to SOURCE_DATE_EPOCH, Go's
# reproducible builds: the same commit gives the same digests on any machine.
# env: VERSION (default: git describe), PLATFORMS (default "linux/amd64 linux/arm64"),
#      SOURCE_DATE_EPOCH (default: the commit's time), IMAGES_OUT (also write NAME=REF@DIGEST lines there),
#      IMAGES_WORK (scratch dir, default a temp dir), FAIRING_BUILDER (fairing-builder to build with; default:
#      built from this tree)
# stdout: one NAME=REF@DIGEST line per image.
set -euo pipefail
REGISTRY=${1:-${REGISTRY:-}}
[ -n "$REGISTRY" ] || { echo "usage: images/build.sh REGISTRY (host:port[/prefix]), or make images REGISTRY=..." >&2; exit 2; }
REGISTRY=${REGISTRY%/}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
log() { echo "[images $(date +%T)] $*" >&2; }
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
PLATFORMS=${PLATFORMS:-linux/amd64 linux/arm64}
W=${IMAGES_WORK:-$(mktemp -d /tmp/fairing-images.XXXXXX)}
[ -n "${IMAGES_WORK:-}" ] || trap 'rm -rf "$W"' EXIT
mkdir -p "$W"
export GOFLAGS="${GOFLAGS:-} -buildvcs=false"
SOURCE=https://github.com/fairing-dev/fairing
PATH_ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

FB=${FAIRING_BUILDER:-}
if [ -z "$FB" ]; then
  FB=$W/host/fairing-builder
  nice go build -o "$FB" ./cmd/fairing-builder
fi
CRANE=$W/host/crane
nice go build -o "$CRANE" github.com/google/go-containerregistry/cmd/crane
# fairing-builder: quiet, the reference on stdout; a throw-away cache (the layers are tiny)
fb() { "$FB" build --quiet --cache-dir "$W/cache" "$@"; }
# index NAME REF... : stitch the per-platform images into REGISTRY/NAME:VERSION, print its digest reference
index() {
  local name=$1 t=$REGISTRY/$1:$VERSION args=() r
  shift
  for r in "$@"; do args+=(-m "$r"); done
  "$CRANE" index append "${args[@]}" -t "$t" >/dev/null 2>"$W/crane.log" || { cat "$W/crane.log" >&2; return 1; }
  echo "$REGISTRY/$name@$("$CRANE" digest "$t" 2>"$W/crane.log")"
}

pins() { grep -v '^#' "$1" | awk 'NF == 2 {print $1 "=" $2}'; }
mapfile -t pins < <(pins images/base/packages)
mapfile -t bkpins < <(pins images/buildkit/packages)
# BuildKit's module refuses `go install` (exclude directives): build it as the main module, as
# .ci/buildkit/build.sh does, but static and for each platform
BK_VERSION=$(go list -m -f '{{.Version}}' github.com/moby/buildkit)
BK_SRC=$W/buildkit-src
if [ ! -d "$BK_SRC" ]; then
  d=$(go mod download -json "github.com/moby/buildkit@$BK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  cp -r "$d" "$BK_SRC.tmp" && chmod -R u+w "$BK_SRC.tmp" && mv "$BK_SRC.tmp" "$BK_SRC"
fi
bases=() builders=() submits=() buildkits=()
packages=""
for p in $PLATFORMS; do
  arch=${p#linux/}; arch=${arch%%/*}
  A=$W/$arch
  mkdir -p "$A"
  log "$p: Debian packages"
  pk=$(bash images/base/debs.sh "$arch" "$A/debs" "${pins[@]}")
  packages=$(echo "$pk" | paste -sd, -)

  # --- the base's root filesystem ---
  R=$A/rootfs
  rm -rf "$R" && mkdir -p "$R/bin" "$R/etc/ssl/certs" "$R/tmp" "$R/root" "$R/usr/share/doc"
  install -m 0755 "$A/debs/busybox-static/bin/busybox" "$R/bin/busybox"
  # the applets: the list of this busybox version, from whichever build runs on this machine
  list=""
  for b in "$W"/*/debs/busybox-static/bin/busybox /bin/busybox; do
    [ -x "$b" ] && list=$("$b" --list 2>/dev/null) && [ -n "$list" ] && break
  done
  [ -n "$list" ] || { echo "cannot list the busybox applets: no busybox of $PLATFORMS runs here" >&2; exit 1; }
  for a in $list; do [ "$a" = busybox ] || ln -s busybox "$R/bin/$a"; done
  # Mozilla's CA certificates as one bundle, in a fixed order
  find "$A/debs/ca-certificates/usr/share/ca-certificates/mozilla" -name '*.crt' | LC_ALL=C sort | xargs cat > "$R/etc/ssl/certs/ca-certificates.crt"
  for d in busybox-static ca-certificates; do
    mkdir -p "$R/usr/share/doc/$d" && cp "$A/debs/$d/usr/share/doc/$d/copyright" "$R/usr/share/doc/$d/"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnonroot:x:65532:65532:nonroot:/home/nonroot:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$R/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\nnogroup:x:65534:\n' > "$R/etc/group"
  chmod 0755 "$R/bin" "$R/etc" && chmod 0644 "$R/etc/passwd" "$R/etc/group" && chmod 0700 "$R/root" && chmod 1777 "$R/tmp"
  H=$A/home && rm -rf "$H" && mkdir -p "$H/nonroot" && chmod 0755 "$H/nonroot"

  log "$p: base"
  # (the layout is named relative to $A: its name is recorded in the image as the base's name)
  (cd "$A" && fb --context rootfs --workdir / --base scratch --platform "$p" --destination oci:layout:root \
    --env "$PATH_ENV" --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt --cmd /bin/sh >/dev/null)
  bases+=("$(cd "$A" && fb --context home --workdir /home --chown 65532:65532 --base oci:layout:root --user 65532:65532 \
    --env HOME=/home/nonroot --label "org.opencontainers.image.source=$SOURCE" --label "dev.fairing.debian-packages=$packages" \
    --label "org.opencontainers.image.description=fairing's minimal base: busybox, CA certificates, user nonroot (65532)" \
    --destination "$REGISTRY/fairing-base:$VERSION-$arch")")

  for prog in fairing-builder fairing-submit; do
    log "$p: $prog"
    B=$A/$prog
    rm -rf "$B" && mkdir -p "$B/usr/local/bin"
    ldf="-s -w -X main.version=$VERSION"
    [ "$prog" = fairing-submit ] && ldf="$ldf -X main.imageRepo=$REGISTRY"
    CGO_ENABLED=0 GOOS=linux GOARCH=$arch nice go build -trimpath -ldflags "$ldf" -o "$B/usr/local/bin/$prog" "./cmd/$prog"
    ref=$(fb --context "$B" --workdir / --base "${bases[-1]}" --entrypoint "/usr/local/bin/$prog" --cmd "" \
      --label "org.opencontainers.image.source=$SOURCE" --label "org.opencontainers.image.version=$VERSION" \
      --label "org.opencontainers.image.title=$prog" --destination "$REGISTRY/$prog:$VERSION-$arch")
    case $prog in fairing-builder) builders+=("$ref") ;; *) submits+=("$ref") ;; esac
  done

  log "$p: fairing-builder-buildkit"
  bkpk=$(bash images/base/debs.sh "$arch" "$A/debs" "${bkpins[@]}" | paste -sd, -)
  K=$A/buildkit && rm -rf "$K" && mkdir -p "$K/usr/local/bin" "$K/usr/sbin" "$K/usr/share/doc"
  # runc and what it links: the C library and its loader, libseccomp
  cp -a "$A/debs/libc6/lib" "$K/lib" && { [ ! -d "$A/debs/libc6/lib64" ] || cp -a "$A/debs/libc6/lib64" "$K/lib64"; }
  mkdir -p "$K/usr/lib" && cp -a "$A/debs/libseccomp2/usr/lib/." "$K/usr/lib/"
  install -m 0755 "$A/debs/runc/usr/sbin/runc" "$K/usr/sbin/runc"
  # absolute links (/lib64/ld-linux-x86-64.so.2 -> /lib/...) made relative: an image layer may only
  # hold links that stay inside it
  find "$K" -type l -lname '/*' | while read -r l; do ln -sfnr "$K$(readlink "$l")" "$l"; done
  for d in libc6 libseccomp2 runc; do
    mkdir -p "$K/usr/share/doc/$d" && cp "$A/debs/$d/usr/share/doc/$d/copyright" "$K/usr/share/doc/$d/"
  done
  (cd "$BK_SRC" && CGO_ENABLED=0 GOOS=linux GOARCH=$arch nice go build -trimpath \
    -ldflags "-s -w -X github.com/moby/buildkit/version.Version=$BK_VERSION" -o "$K/usr/local/bin/buildkitd" ./cmd/buildkitd)
  cp "$A/fairing-builder/usr/local/bin/fairing-builder" "$K/usr/local/bin/"
  buildkits+=("$(fb --context "$K" --workdir / --base "${bases[-1]}" --user 0:0 --env HOME=/root \
    --entrypoint /usr/local/bin/fairing-builder --cmd "" \
    --label "org.opencontainers.image.source=$SOURCE" --label "org.opencontainers.image.version=$VERSION" \
    --label "org.opencontainers.image.title=fairing-builder-buildkit" --label "dev.fairing.buildkit-version=$BK_VERSION" \
    --label "dev.fairing.debian-packages=$packages,$bkpk" --destination "$REGISTRY/fairing-builder-buildkit:$VERSION-$arch")")
done

out=$(
  echo "fairing-base=$(index fairing-base "${bases[@]}")"
  echo "fairing-builder=$(index fairing-builder "${builders[@]}")"
  echo "fairing-submit=$(index fairing-submit "${submits[@]}")"
  echo "fairing-builder-buildkit=$(index fairing-builder-buildkit "${buildkits[@]}")"
)
echo "$out"
[ -z "${IMAGES_OUT:-}" ] || echo "$out" > "$IMAGES_OUT"
log "done: $(echo "$out" | tr '\n' ' ')"
