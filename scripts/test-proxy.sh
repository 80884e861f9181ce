#!/usr/bin/env bash
# termpool behind a real TLS reverse proxy at a sub-path: nginx (Debian's nginx-light) with a
# certificate made here, termpool (local mode) with BASE_PATH=/terminal/ and TRUSTED_PROXIES set.
# scripts/proxy/check.py then checks the page, the Secure cookie, the origin check, forged
# X-Forwarded-For, the API, an upload and a re-attach through the proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v nginx >/dev/null || { echo "test-proxy: nginx is missing (apt-get install nginx-light)" >&2; exit 1; }
cargo build --quiet --bin termpool
bin="${CARGO_TARGET_DIR:-target}/debug/termpool"

tmp=$(mktemp -d /tmp/termpool-proxy.XXXXXX)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
    -addext "subjectAltName=DNS:localhost" \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>/dev/null

MAX_NEW_IDENTITIES_PER_ADDRESS_PER_MINUTE=2 "$bin" --port 0 --bind 127.0.0.1 \
    --shell "/bin/bash --noprofile --norc" --base-path /terminal/ \
    --trusted-proxies 127.0.0.2 --allowed-hosts localhost >"$tmp/termpool.out" 2>"$tmp/termpool.log" &
pids+=($!)
for _ in $(seq 100); do
    upstream=$(sed -n 's|^listening on http://||p' "$tmp/termpool.out")
    [ -n "$upstream" ] && break
    sleep 0.1
done
[ -n "$upstream" ] || { cat "$tmp/termpool.log" >&2; echo "test-proxy: termpool did not start" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sed -e "s|@TMP@|$tmp|g" -e "s|@TLS_PORT@|$port|g" -e "s|@UPSTREAM@|$upstream|g" \
    scripts/proxy/nginx.conf >"$tmp/nginx.conf"
nginx -c "$tmp/nginx.conf" -p "$tmp" -e "$tmp/nginx-error.log" &
pids+=($!)
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done

if ! python3 scripts/proxy/check.py "https://localhost:$port/terminal/" "$tmp/cert.pem"; then
    echo "--- termpool log" >&2; tail -20 "$tmp/termpool.log" >&2
    echo "--- nginx log" >&2; tail -20 "$tmp/nginx-error.log" >&2
    exit 1
fi
echo "test-proxy: all checks passed"
