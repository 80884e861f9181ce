#!/bin/bash
# Builds ttyd, the comparison server of the relay benchmark (never used by CI's tests): Debian's
# source package from unstable (neither bookworm nor trixie has one), fetched through a deb-src line that exists only
# for the one `apt-get source` command, built against bookworm's libraries.
#
#   scripts/build-ttyd.sh [OUT_DIR]     (default target/ttyd; prints the binary's path)
#
# Needs root (apt-get). The benchmark finds the binary with `--ttyd PATH` or TERMPOOL_TTYD.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath -m "${1:-target/ttyd}")
if [ -x "$out/ttyd" ]; then
    echo "$out/ttyd"
    exit 0
fi
mkdir -p "$out"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends dpkg-dev cmake build-essential pkg-config \
    libwebsockets-dev libjson-c-dev libuv1-dev zlib1g-dev libssl-dev >&2

# A deb-src list of its own, passed to this one apt-get call and deleted after.
lists=$(mktemp -d)
trap 'rm -rf "$lists"' EXIT
# The mirror is the one this machine's apt already uses for its Debian suite.
mirror=$(grep -h -m1 -E '^URIs: ' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}' || true)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || { echo "build-ttyd: no Debian mirror found in apt's sources" >&2; exit 1; }
cat >"$lists/sid-src.sources" <<EOF
Types: deb-src
URIs: $mirror
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
apt_opts=(-o APT::Sandbox::User=root -o "Dir::Etc::SourceParts=$lists" -o "Dir::Etc::SourceList=/dev/null"
    -o "Dir::State::Lists=$lists/state" -o "Dir::Cache=$lists/cache")
mkdir -p "$lists/state/partial" "$lists/cache/archives/partial"
apt-get "${apt_opts[@]}" update -q >&2
# The Debian packaging may be missing from the mirror while the upstream tarball is there: only
# the upstream source is needed.
(cd "$out" && apt-get "${apt_opts[@]}" source -q --download-only ttyd >&2) || true
orig=$(find "$out" -maxdepth 1 -name 'ttyd_*.orig.tar.*' | head -1)
[ -n "$orig" ] || { echo "build-ttyd: no ttyd source could be had" >&2; exit 1; }
tar -C "$out" -xf "$orig"
src=$(find "$out" -maxdepth 1 -type d -name 'ttyd-*' | head -1)
[ -n "$src" ] || { echo "build-ttyd: no source unpacked in $out" >&2; exit 1; }
cmake -S "$src" -B "$out/build" -DCMAKE_BUILD_TYPE=Release >&2
cmake --build "$out/build" -j2 >&2
cp "$out/build/ttyd" "$out/ttyd"
echo "$out/ttyd"
