#!/usr/bin/env bash
# Build the session agent (agent/, crate termpool-agent) as a static executable for the user image,
# and print its path. Static: it runs in the image whatever libraries the build host has.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v cargo >/dev/null || { echo "build-agent: cargo not found (install Rust: https://rustup.rs)" >&2; exit 1; }
TRIPLE=$(rustc -vV | sed -n 's/^host: //p')
# With an explicit --target, RUSTFLAGS reach only the target's code, not build scripts.
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked --quiet -p termpool-agent --target "$TRIPLE" >&2
DIR=$(cargo metadata --format-version 1 --no-deps --locked 2>/dev/null |
    grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
BIN="${DIR:-target}/$TRIPLE/release/termpool-agent"
if LC_ALL=C readelf -l "$BIN" | grep -q 'program interpreter'; then
    echo "build-agent: $BIN is not static" >&2
    exit 1
fi
echo "$BIN"
