#!/usr/bin/env bash
# Build the Debian bookworm base image (termpool-base:bookworm) without any image registry:
# debootstrap a minbase root file system from the Debian mirror and `docker import` it.
# Idempotent: does nothing when the image already exists (set REBUILD=1 to force).
set -euo pipefail

IMAGE=${TERMPOOL_BASE_IMAGE:-termpool-base:bookworm}
# The mirrors default to the ones this machine's apt already uses (the archive ending in
# /debian, and in /debian-security).
apt_mirror() {
    { grep -h -E '^URIs: ' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
      awk '$1 == "deb" {print $2}' /etc/apt/sources.list 2>/dev/null; } | grep -m1 -E "/$1/?\$" || true
}
MIRROR=${DEBIAN_MIRROR:-$(apt_mirror debian)}
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(apt_mirror debian-security)}
[ -n "$MIRROR" ] || { echo "build-base-image: set DEBIAN_MIRROR (no Debian mirror in apt's sources)" >&2; exit 1; }

if [ "${REBUILD:-0}" != 1 ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
    echo "build-base-image: $IMAGE already exists" >&2
    exit 0
fi
command -v debootstrap >/dev/null 2>&1 || { echo "build-base-image: debootstrap missing (run scripts/install-docker.sh)" >&2; exit 1; }

ROOTFS=$(mktemp -d /var/tmp/termpool-rootfs.XXXXXX)
cleanup() {
    # debootstrap mounts proc/sys inside the target; a failed run can leave them mounted,
    # and rm must never descend into them.
    for m in proc sys dev/pts dev; do umount -l "$ROOTFS/$m" 2>/dev/null || true; done
    rm -rf --one-file-system "$ROOTFS"
}
trap cleanup EXIT

echo "build-base-image: debootstrap bookworm from $MIRROR" >&2
debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >/var/log/termpool-debootstrap.log 2>&1 || {
    echo "build-base-image: debootstrap failed; tail of /var/log/termpool-debootstrap.log:" >&2
    tail -n 30 /var/log/termpool-debootstrap.log >&2
    exit 1
}

# Updates and security suites too, so images built on top get fixes.
cat >"$ROOTFS/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY_MIRROR bookworm-security main
EOF
rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/* "$ROOTFS"/var/log/*.log

echo "build-base-image: importing as $IMAGE" >&2
tar --numeric-owner --xattrs -C "$ROOTFS" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    - "$IMAGE" >/dev/null
echo "build-base-image: built $IMAGE" >&2
