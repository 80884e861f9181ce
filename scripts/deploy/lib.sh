# Shared helpers of the deployment scripts (sourced, not run):
# scripts/setup-dependencies.sh, scripts/setup-container-mode.sh, scripts/test-deployment.sh.

# Runs a command as root: directly when already root, through sudo when it is there; otherwise
# fails (the caller prints what to run by hand).
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        return 1
    fi
}

# The compose command of this machine, as words in the array COMPOSE: the `docker compose`
# plugin (v2) when present, else the standalone `docker-compose` (v1, Debian's package, or v2).
# Returns 1 when there is none.
# shellcheck disable=SC2034 # COMPOSE is the result, used by the callers
find_compose() {
    COMPOSE=()
    if docker compose version >/dev/null 2>&1; then
        COMPOSE=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1 && docker-compose version >/dev/null 2>&1; then
        COMPOSE=(docker-compose)
    else
        return 1
    fi
}

# The path of the Docker socket: from DOCKER_HOST when it names a unix socket, else the default.
docker_socket_path() {
    case "${DOCKER_HOST:-}" in
        unix://*) echo "${DOCKER_HOST#unix://}" ;;
        *) echo "${DOCKER_SOCKET:-/var/run/docker.sock}" ;;
    esac
}

# Sets KEY=VALUE in an env file (created when missing), keeping every other line as it was.
set_env_var() {
    local file=$1 key=$2 value=$3 tmp
    tmp=$(mktemp "${file}.XXXXXX")
    if [ -f "$file" ]; then
        grep -v -E "^[[:space:]]*${key}=" "$file" >"$tmp" || true
    fi
    printf '%s=%s\n' "$key" "$value" >>"$tmp"
    chmod 0644 "$tmp"
    mv "$tmp" "$file"
}

# "major.minor" of a version string ("cargo 1.95.0 (...)" -> 1.95); compares with version_ge.
version_of() { grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n 1; }
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n 1)" = "$2" ]; }

# Where cargo puts the release binary (honours CARGO_TARGET_DIR and .cargo/config).
release_binary() {
    local dir
    dir=$(cargo metadata --format-version 1 --no-deps --locked 2>/dev/null |
        grep -o '"target_directory":"[^"]*"' | cut -d'"' -f4)
    echo "${dir:-target}/release/termpool"
}
