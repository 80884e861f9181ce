#!/usr/bin/env bash
# Step 1 of the container-mode deployment: checks for what it needs and installs what it can.
#
#   - Docker engine + CLI, running          (Debian/Ubuntu: apt docker.io; started if not running)
#   - Docker Compose: `docker compose` (plugin) or `docker-compose`
#                                           (apt: docker-compose-plugin, docker-compose-v2 or
#                                            Debian's docker-compose 1.29, whichever apt offers)
#   - debootstrap: builds the local Debian base image when no image registry can be reached
#   - to build the server on this machine: a C toolchain (gcc), Node.js >= 18 with npm (the
#     terminal page), and Rust (cargo) at least the rust-version of Cargo.toml. Rust is never
#     installed here (Debian's rustc is too old): install it with rustup.
#
# Idempotent: installs only what is missing, starts the daemon only when it does not answer.
# Runs apt and dockerd as root (directly, or through sudo). Exits non-zero, with a list of what
# to do by hand, when something required is still missing at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deploy/lib.sh

say() { echo "setup-dependencies: $*" >&2; }
todo=() # what the user must still do by hand

RUST_MIN=$(sed -n 's/^rust-version *= *"\([0-9.]*\)".*/\1/p' Cargo.toml | head -n 1)
RUST_MIN=${RUST_MIN:-1.85}
NODE_MIN=18

have_apt() { command -v apt-get >/dev/null 2>&1 && command -v apt-cache >/dev/null 2>&1; }
apt_has() { # the package has an install candidate in apt's lists
    local policy
    policy=$(apt-cache policy "$1" 2>/dev/null) || return 1
    [[ $policy == *"Candidate: "[!\(]* ]]
}

# ---- 1. what is missing ---------------------------------------------------------------------
pkgs=()
engine_ok() { docker info >/dev/null 2>&1; }
if ! command -v docker >/dev/null 2>&1 || { ! command -v dockerd >/dev/null 2>&1 && ! engine_ok; }; then
    pkgs+=(docker.io)
fi
need_compose=0
find_compose || need_compose=1
command -v debootstrap >/dev/null 2>&1 || pkgs+=(debootstrap)
command -v cc >/dev/null 2>&1 || pkgs+=(gcc libc6-dev)
node_ok() {
    command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 &&
        version_ge "$(node --version | version_of)" "$NODE_MIN"
}
if ! command -v node >/dev/null 2>&1; then
    pkgs+=(nodejs npm)
elif ! command -v npm >/dev/null 2>&1; then
    pkgs+=(npm)
fi

# ---- 2. install what apt can ------------------------------------------------------------------
if [ "${#pkgs[@]}" -gt 0 ] || [ "$need_compose" = 1 ]; then
    if have_apt && as_root true 2>/dev/null; then
        export DEBIAN_FRONTEND=noninteractive
        say "apt-get update"
        as_root apt-get update -q >/dev/null
        if [ "$need_compose" = 1 ]; then
            # Docker's own repository has the plugin; Ubuntu 24.04+ has docker-compose-v2;
            # Debian bookworm has docker-compose 1.29 (Python), which reads this compose file too.
            for p in docker-compose-plugin docker-compose-v2 docker-compose; do
                if apt_has "$p"; then pkgs+=("$p"); break; fi
            done
        fi
        if [ "${#pkgs[@]}" -gt 0 ]; then
            say "installing ${pkgs[*]}"
            as_root env DEBIAN_FRONTEND=noninteractive \
                apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null
        fi
    elif have_apt; then
        todo+=("run as root or install sudo, then run this script again (it installs: ${pkgs[*]:-}$([ "$need_compose" = 1 ] && echo " + a compose package"))")
    else
        todo+=("this is not a Debian/Ubuntu machine: install by hand what is reported missing below (Docker: https://docs.docker.com/engine/install/)")
    fi
fi

# ---- 3. a running engine ----------------------------------------------------------------------
start_engine() {
    local sock
    sock=$(docker_socket_path)
    if [ -S "$sock" ] && [ ! -w "$sock" ] && [ "$(id -u)" -ne 0 ]; then
        todo+=("you cannot use $sock: add yourself to its group ($(stat -c %G "$sock")): sudo usermod -aG $(stat -c %G "$sock") $USER, then log in again")
        return 0
    fi
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        say "starting the docker service (systemctl)"
        as_root systemctl enable --now docker >/dev/null 2>&1 || as_root systemctl start docker || true
    elif ! pgrep -x dockerd >/dev/null 2>&1 && command -v dockerd >/dev/null 2>&1; then
        # No systemd (containers, minimal VMs): run dockerd detached so it outlives this shell.
        say "starting dockerd (log: /var/log/dockerd.log)"
        as_root rm -f /var/run/docker.pid
        as_root setsid sh -c 'exec dockerd >>/var/log/dockerd.log 2>&1 </dev/null' &
    fi
    for _ in $(seq "${DOCKER_WAIT_SECS:-60}"); do
        engine_ok && return 0
        sleep 1
    done
}
if command -v docker >/dev/null 2>&1 && ! engine_ok; then
    start_engine
fi

# ---- 4. report ----------------------------------------------------------------------------------
ok() { say "ok       $*"; }
missing() { say "MISSING  $1"; todo+=("$2"); }

if ! command -v docker >/dev/null 2>&1; then
    missing "docker CLI" "install Docker: https://docs.docker.com/engine/install/"
elif engine_ok; then
    ok "docker engine $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})' 2>/dev/null)"
else
    missing "a running Docker engine" "start the Docker daemon (systemctl start docker, or dockerd); see /var/log/dockerd.log; 'docker info' says: $(docker info 2>&1 | grep -m1 -iE 'error|cannot|permission' || true)"
fi
if find_compose; then
    ok "compose: ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null || "${COMPOSE[@]}" version | head -n 1))"
else
    missing "Docker Compose" "install the compose plugin (docker-compose-plugin) or docker-compose: https://docs.docker.com/compose/install/"
fi
if command -v debootstrap >/dev/null 2>&1; then
    ok "debootstrap (builds the base image when no image registry is reachable)"
else
    say "warning  debootstrap missing: setup-container-mode.sh then needs a reachable image registry (debian:bookworm-slim)"
fi
if command -v cc >/dev/null 2>&1; then
    ok "C toolchain ($(command -v cc))"
else
    missing "a C compiler (cc)" "install gcc and the C library headers (Debian: apt-get install gcc libc6-dev)"
fi
if node_ok; then
    ok "node $(node --version), npm $(npm --version)"
else
    missing "Node.js >= $NODE_MIN with npm (builds the terminal page)" "install Node.js >= $NODE_MIN and npm (Debian 12+/Ubuntu 24.04+: apt-get install nodejs npm; else https://nodejs.org)"
fi
if command -v cargo >/dev/null 2>&1 && version_ge "$(cargo --version | version_of)" "$RUST_MIN"; then
    ok "$(cargo --version)"
else
    missing "Rust (cargo) >= $RUST_MIN (found: $(cargo --version 2>/dev/null || echo none))" \
        "install Rust >= $RUST_MIN with rustup: curl --proto '=https' -sSf https://sh.rustup.rs | sh (then open a new shell)"
fi

# Users of one container share /tmp; only the host's fs.protected_* settings (which containers
# see and cannot change) stop them trapping each other there. Set them now and at every boot.
protect_conf=/etc/sysctl.d/50-termpool.conf
if [ "$(id -u)" = 0 ]; then
    printf '%s\n' fs.protected_symlinks=1 fs.protected_hardlinks=1 \
        fs.protected_regular=2 fs.protected_fifos=2 > "$protect_conf"
    if sysctl -q -p "$protect_conf" >/dev/null 2>&1; then
        ok "fs.protected_* set for shared /tmp ($protect_conf)"
    else
        missing "fs.protected_* sysctls" "run: sysctl -p $protect_conf"
    fi
else
    missing "fs.protected_* sysctls" "as root: sysctl -w fs.protected_symlinks=1 fs.protected_hardlinks=1 fs.protected_regular=2 fs.protected_fifos=2"
fi

if [ "${#todo[@]}" -gt 0 ]; then
    say "not done; what to do by hand:"
    for t in "${todo[@]}"; do say "  - $t"; done
    exit 1
fi
say "all dependencies are in place; next: ./scripts/setup-container-mode.sh"
