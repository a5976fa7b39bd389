#!/usr/bin/env bash
# Builds a worker image from local material, for machines that reach no image registry (tests,
# CI): a Debian root of this machine's architecture (farm/roots.py: debootstrap, buildbot-worker
# in /opt/wheelwright, cached), our worker-side tools installed into it, imported with podman.
#
#   containers/debian-image.sh IMAGE CACHE_DIR     (PODMAN may hold podman with its storage flags;
#                                                  PYTHON, an interpreter with wheelwright installed)
set -euo pipefail
image=$1
cache=$2
podman=${PODMAN:-podman}
python=${PYTHON:-python3}
top=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

root=$work/rootfs
"$python" -m wheelwright.farm.roots "$root" --cache "$cache" >/dev/null
"$python" -m pip wheel --quiet --no-deps --wheel-dir "$root/tmp/wheels" "$top"
env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin chroot "$root" /bin/sh -ec '
    /opt/wheelwright/bin/pip install --quiet --no-deps --no-index --disable-pip-version-check /tmp/wheels/*.whl
    rm -rf /tmp/wheels /root/.cache
'
install -m 0755 "$top/containers/start-worker" "$root/usr/local/bin/start-worker"
tar -C "$root" -c . | $podman import --quiet --change 'CMD ["/usr/local/bin/start-worker"]' - "$image" >/dev/null
echo "$image"
