#!/usr/bin/env bash
# Builds a worker image from local material, for machines that reach no image registry (tests,
# CI): a Debian root filesystem made with debootstrap, Buildbot's worker and our worker-side tools
# in /opt/wheelwright, imported with podman. The debootstrap tarball is cached; it only saves time.
#
#   containers/debian-image.sh IMAGE CACHE_DIR     (PODMAN may hold podman with its storage flags)
set -euo pipefail
image=$1
cache=$2
podman=${PODMAN:-podman}
top=$(cd "$(dirname "$0")/.." && pwd)
mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
# System build tools a package may need: compilers, patch; bubblewrap, the builds' sandbox.
packages=python3,python3-venv,python3-dev,gcc,libc6-dev,patch,ca-certificates,bubblewrap
mkdir -p "$cache"
base=$cache/bookworm-base-$(echo "$packages" | sha256sum | cut -c1-12).tar
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -f "$base" ]; then
    debootstrap --variant=minbase --include="$packages" bookworm "$work/rootfs" "${mirror:-http://deb.debian.org/debian}" >"$cache/debootstrap.log"
    tar -C "$work/rootfs" -cf "$base.tmp" . && mv "$base.tmp" "$base"
    rm -rf "$work/rootfs"
fi

mkdir "$work/rootfs"
tar -C "$work/rootfs" -xf "$base"
"${PYTHON:-python3}" -m pip wheel --quiet --no-deps --wheel-dir "$work/rootfs/tmp/wheels" "$top"
cp /etc/resolv.conf "$work/rootfs/etc/resolv.conf"
# The host's CA bundle (TLS may go through a proxy only it trusts); under env -i so that the
# host's REQUESTS_CA_BUNDLE does not leak in and override --cert.
cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/tmp/host-ca.pem"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$work/rootfs" /bin/sh -ec '
    python3 -m venv /opt/wheelwright
    /opt/wheelwright/bin/pip install --quiet --cert /tmp/host-ca.pem --disable-pip-version-check \
        "buildbot-worker==4.3.0" /tmp/wheels/*.whl
    rm -rf /tmp/wheels /tmp/host-ca.pem /root/.cache
'
install -m 0755 "$top/containers/start-worker" "$work/rootfs/usr/local/bin/start-worker"
tar -C "$work/rootfs" -c . | $podman import --quiet --change 'CMD ["/usr/local/bin/start-worker"]' - "$image" >/dev/null
echo "$image"
