#!/usr/bin/env bash
# Installs and starts everything the test suite needs on a fresh Debian machine: the Docker engine,
# the base and user images, headless Chromium and the browser test's npm packages. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs npm)
command -v pkill >/dev/null || missing+=(procps)
command -v vim >/dev/null || missing+=(vim)
command -v nginx >/dev/null || missing+=(nginx-light) # scripts/test-proxy.sh
command -v mkfs.btrfs >/dev/null || missing+=(btrfs-progs) # tests/quota.rs: a btrfs workspace
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Users sharing a container share /tmp: the host must stop them trapping each other there with
# symlinks, hard links, FIFOs or pre-created files (a container sees, and cannot change, these).
sysctl -q -w fs.protected_symlinks=1 fs.protected_hardlinks=1 fs.protected_regular=2 fs.protected_fifos=2

scripts/install-docker.sh
scripts/build-user-image.sh

if [ ! -d tests/browser/node_modules ]; then
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
fi
