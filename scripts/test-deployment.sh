#!/usr/bin/env bash
# The deployment test: the README's three steps on this machine, with a real Docker engine and a
# real compose, then a terminal session through the published port.
#
#   1. scripts/setup-dependencies.sh, scripts/setup-container-mode.sh (twice: idempotent)
#   2. docker-compose -f docker-compose-multi-user.yml up -d; the server turns healthy, runs as
#      non-root with the socket's group, /healthz answers on the published port; it answers to
#      the ALLOWED_HOSTS setup wrote to .env and to IP addresses, not to other names
#   3. a WebSocket session (scripts/deploy/wsclient.py): whoami, container-info, write a file
#   4. down, up: the same cookie finds the same user, the same (adopted) container, the file
#   5. settings in .env reach the server: every variable of `termpool --help` is passed through
#      (docker-compose config), and IDENTITY_MODE=token with a TOKEN_FILE in .env turns the
#      running server into token mode (login form; the token's user gets a session)
#   6. down -v; then everything the test created is removed, also when it fails (trap)
#
# Isolated from a real deployment on the same engine: its own compose project, container
# prefix (= pool label), workspace and store volumes, a free port on 127.0.0.1, network none
# for the user containers, 2 containers. It shares the images (and .env's DOCKER_GID, which it
# puts back as it was). Fails, loudly, when Docker is missing and cannot be installed.
# Ends with `deployment: N passed, M failed`; exits non-zero when anything failed.

# SC2016: the single-quoted `bash -c` snippets get their values as arguments, on purpose.
# SC2317: shellcheck takes the functions that run after `finish` (which exits) for unreachable.
# shellcheck disable=SC2016,SC2317
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
. scripts/deploy/lib.sh

NAME=${DEPLOY_TEST_NAME:-termpool-deploytest}
FILE=docker-compose-multi-user.yml
export SERVER_IMAGE=${SERVER_IMAGE:-termpool-server:latest}
export CONTAINER_IMAGE=${CONTAINER_IMAGE:-terminal-multi-user:latest}
export COMPOSE_PROJECT_NAME=$NAME
export CONTAINER_PREFIX=$NAME
export WORKSPACE_VOLUME=$NAME-workspace
export DATA_VOLUME=$NAME-data
export CONTAINER_NETWORK=none
export MAX_CONTAINERS=${DEPLOY_TEST_CONTAINERS:-2}
export PUBLISH_ADDRESS=127.0.0.1
export AGENT_DIR=/var/lib/$NAME-agents
TOKENS=/var/lib/$NAME-tokens
HEALTH_WAIT_SECS=${HEALTH_WAIT_SECS:-120}

passed=0
failed=0
t0=$SECONDS
say() { echo "test-deployment: $*" >&2; }
ok() { passed=$((passed + 1)); echo "ok     $*"; }
bad() { failed=$((failed + 1)); echo "FAIL   $*"; }
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
volume_exists() { docker volume inspect "$1" >/dev/null 2>&1; }
eq() { [ "$1" = "$2" ] || { echo "       expected [$2], got [$1]"; return 1; }; }
finish() { # cleans up first, so that the count is the last line
    cleanup_all
    echo "deployment: $passed passed, $failed failed"
    [ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
    exit
}
abort() { # a failure that makes the remaining steps meaningless
    bad "$*"
    finish
}

# ---- cleanup of everything this test creates (also on failure) -------------------------------
env_backup=$(mktemp)
env_existed=0
if [ -f .env ]; then env_existed=1; cp -p .env "$env_backup"; fi
stack_up=0
remove_own() {
    local ids
    ids=$(docker ps -aq --filter "label=termpool.pool=$NAME"
        docker ps -aq --filter "label=termpool.hidepid-helper=$NAME"
        docker ps -aq --filter "name=^/${NAME}[-_]")
    [ -n "$ids" ] && sort -u <<<"$ids" | xargs docker rm -f >/dev/null 2>&1
    for v in "$WORKSPACE_VOLUME" "$DATA_VOLUME"; do
        docker volume inspect "$v" >/dev/null 2>&1 && docker volume rm -f "$v" >/dev/null 2>&1
    done
    docker network rm "${NAME}_default" >/dev/null 2>&1
    as_root rm -rf "$AGENT_DIR" "$TOKENS"
    return 0
}
cleaned=0
cleanup_all() {
    [ "$cleaned" = 1 ] && return 0
    cleaned=1
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
        if [ "$failed" -gt 0 ] && [ "$stack_up" = 1 ]; then
            say "---- server logs (last 60 lines) ----"
            "${COMPOSE[@]}" -f "$FILE" -p "$NAME" logs --no-color --tail 60 >&2 2>&1 || true
        fi
        if [ "${#COMPOSE[@]}" -gt 0 ]; then
            "${COMPOSE[@]}" -f "$FILE" -p "$NAME" down -v --remove-orphans -t 30 >/dev/null 2>&1 || true
        fi
        remove_own
    fi
    if [ "$env_existed" = 1 ]; then cp -p "$env_backup" .env; else rm -f .env; fi
    rm -f "$env_backup"
    if [ -n "${tmp:-}" ] && [ -d "$tmp" ]; then rm -rf "$tmp"; fi
    say "cleaned up; total $((SECONDS - t0))s"
}
COMPOSE=()
trap 'rc=$?; cleanup_all; exit $rc' EXIT
trap 'bad "interrupted"; finish' INT TERM
tmp=$(mktemp -d)

declare -A secs=()
timed() { # timed LABEL COMMAND...: runs it, logs to $tmp/LABEL.log, records secs[LABEL]
    local label=$1 start=$SECONDS rc
    shift
    "$@" >"$tmp/$label.log" 2>&1
    rc=$?
    secs[$label]=$((SECONDS - start))
    if [ "$rc" -ne 0 ]; then
        say "---- $label failed (rc $rc); last lines of its output ----"
        tail -n 40 "$tmp/$label.log" >&2
    fi
    return "$rc"
}

# ---- 1. the setup scripts ---------------------------------------------------------------------
if ! command -v python3 >/dev/null 2>&1; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 >/dev/null 2>&1 ||
        abort "python3 is needed by the test client and could not be installed"
fi
check "setup-dependencies.sh succeeds" timed setup-dependencies scripts/setup-dependencies.sh
if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "test-deployment: ERROR: Docker is missing or its engine does not answer, and setup-dependencies.sh could not fix it" >&2
    abort "Docker engine available"
fi
find_compose || abort "a compose command (docker compose / docker-compose) is available"
ok "Docker $(docker version -f '{{.Server.Version}}') and ${COMPOSE[*]} ($("${COMPOSE[@]}" version --short 2>/dev/null))"
check "setup-dependencies.sh is idempotent (second run succeeds)" timed setup-dependencies-warm scripts/setup-dependencies.sh

# Leftovers of an earlier run that was killed before its cleanup.
remove_own
"${COMPOSE[@]}" -f "$FILE" -p "$NAME" down -v --remove-orphans >/dev/null 2>&1

timed setup-container-mode scripts/setup-container-mode.sh ||
    abort "setup-container-mode.sh succeeds"
ok "setup-container-mode.sh succeeds (${secs[setup-container-mode]}s)"
server_image=$(docker image inspect -f '{{.Id}}' "$SERVER_IMAGE" 2>/dev/null)
user_image=$(docker image inspect -f '{{.Id}}' "$CONTAINER_IMAGE" 2>/dev/null)
binary_sum() { sha256sum "$(release_binary)" | cut -d' ' -f1; }
binary_before=$(binary_sum)
check "setup-container-mode.sh is idempotent (second run succeeds)" timed setup-container-mode-warm scripts/setup-container-mode.sh
if [ "$(binary_sum)" = "$binary_before" ]; then
    check "the second run keeps the server image" eq "$(docker image inspect -f '{{.Id}}' "$SERVER_IMAGE" 2>/dev/null)" "$server_image"
else
    say "note: the sources changed during the test: the second run rebuilt the server"
fi
check "the server image holds the binary just built" eq \
    "$(docker run --rm --entrypoint sha256sum "$SERVER_IMAGE" /usr/local/bin/termpool | cut -d' ' -f1)" "$(binary_sum)"
check "the second run keeps the user image" eq "$(docker image inspect -f '{{.Id}}' "$CONTAINER_IMAGE" 2>/dev/null)" "$user_image"
check "the workspace volume $WORKSPACE_VOLUME exists" volume_exists "$WORKSPACE_VOLUME"
sock_gid=$(stat -c %g "$(docker_socket_path)")
check ".env has DOCKER_GID of the socket ($sock_gid)" grep -qx "DOCKER_GID=$sock_gid" .env
check ".env has ALLOWED_HOSTS (asked for, or derived from hostname -f)" grep -qE "^ALLOWED_HOSTS=.+" .env
check "the server image runs as termpool" eq "$(docker image inspect -f '{{.Config.User}}' "$SERVER_IMAGE")" termpool
check "the server image has a HEALTHCHECK" eq "$(docker image inspect -f '{{if .Config.Healthcheck}}yes{{end}}' "$SERVER_IMAGE")" yes
check "the compose file is valid" "${COMPOSE[@]}" -f "$FILE" config -q

# Every setting of the server's `--help` must reach it: with each set to a value of its own,
# `config` shows that value in the server's environment (or the compose file's fixed one).
server_env_vars() {
    docker run --rm --entrypoint /usr/local/bin/termpool "$SERVER_IMAGE" --help |
        grep -oE '\[env: [A-Z0-9_]+' | cut -d' ' -f2
}
expected_value() { # the value the server must get when every variable is set to /set-NAME
    case $1 in
        USE_CONTAINERS) echo true ;;
        BIND_ADDRESS) echo 0.0.0.0 ;;
        PORT) echo 3000 ;;
        DATA_DIR) echo /var/lib/termpool ;;
        *) echo "/set-$1" ;;
    esac
}
every_setting_passed() {
    local vars assignments=() config v missing=()
    vars=$(server_env_vars)
    [ "$(wc -w <<<"$vars")" -ge 20 ] || { echo "       --help lists only: $vars"; return 1; }
    for v in $vars; do assignments+=("$v=/set-$v"); done
    config=$(env "${assignments[@]}" "${COMPOSE[@]}" -f "$FILE" config) || return 1
    for v in $vars; do
        grep -qE "^ +$v: [\"']?$(expected_value "$v")[\"']?\$" <<<"$config" || missing+=("$v")
    done
    [ "${#missing[@]}" -eq 0 ] || { echo "       not passed to the server: ${missing[*]}"; return 1; }
}
check "every variable of termpool --help reaches the server's environment" every_setting_passed
# The Swarm stack file (docker-stack.yml) names every setting as well; `docker stack deploy`
# has no `config`, so this is read from the file itself.
stack_names_every_setting() {
    local v missing=()
    for v in $(server_env_vars); do
        grep -qE "^      $v:" docker-stack.yml || missing+=("$v")
    done
    [ "${#missing[@]}" -eq 0 ] || { echo "       not in docker-stack.yml: ${missing[*]}"; return 1; }
}
check "every variable of termpool --help is in docker-stack.yml's environment" stack_names_every_setting

# ---- 2. up ------------------------------------------------------------------------------------
export PUBLISH_PORT
PUBLISH_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE=http://127.0.0.1:$PUBLISH_PORT

server_id() { "${COMPOSE[@]}" -f "$FILE" -p "$NAME" ps -q termpool 2>/dev/null | head -n 1; }
wait_healthz() { # until /healthz answers 200 on the published port
    local deadline=$((SECONDS + HEALTH_WAIT_SECS))
    while [ "$SECONDS" -lt "$deadline" ]; do
        python3 - "$BASE/healthz" <<'EOF' 2>/dev/null && return 0
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.exit(0 if r.status == 200 and b'"ok"' in r.read() else 1)
EOF
        sleep 1
    done
    return 1
}
wait_healthy() { # until Docker's HEALTHCHECK says healthy
    local deadline=$((SECONDS + HEALTH_WAIT_SECS)) status=
    while [ "$SECONDS" -lt "$deadline" ]; do
        status=$(docker inspect -f '{{.State.Health.Status}}' "$(server_id)" 2>/dev/null)
        [ "$status" = healthy ] && return 0
        sleep 1
    done
    echo "       health status: ${status:-none}"
    return 1
}
compose_up() {
    timed "$1" "${COMPOSE[@]}" -f "$FILE" -p "$NAME" up -d
}

stack_up=1
compose_up compose-up || abort "compose up -d"
ok "compose up -d (${secs[compose-up]}s)"
up_started=$SECONDS
check "/healthz answers 200 on the published port" wait_healthz
secs[first-healthz]=$((SECONDS - up_started))
host_status() { # host_status HOST: the status of GET / sent to the published port as HOST
    python3 - "$BASE" "$1" <<'EOF'
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
c.request("GET", "/container-terminal", headers={"Host": sys.argv[2]})
print(c.getresponse().status)
EOF
}
# DNS rebinding: a page under a name of its own that resolves here is refused; the names of
# .env's ALLOWED_HOSTS, IP addresses and localhost are answered.
check "a request for a foreign host name is refused (403)" eq "$(host_status "rebind.evil.example:$PUBLISH_PORT")" 403
check "a request for 127.0.0.1 is answered" eq "$(host_status "127.0.0.1:$PUBLISH_PORT")" 200
first_host=$(sed -n 's/^ALLOWED_HOSTS=//p' .env | cut -d, -f1)
check "a request for ALLOWED_HOSTS' $first_host is answered" eq "$(host_status "$first_host:$PUBLISH_PORT")" 200
check "Docker's HEALTHCHECK reports healthy" wait_healthy
sid=$(server_id)
check "the server runs as uid 10001" eq "$(docker exec "$sid" id -u 2>/dev/null)" 10001
check "the server holds the socket's group $sock_gid" grep -qw "$sock_gid" <<<"$(docker exec "$sid" id -G 2>/dev/null)"
check "the server's root file system is read-only" eq "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$sid")" true
check "the server has a restart policy" eq "$(docker inspect -f '{{.HostConfig.RestartPolicy.Name}}' "$sid")" unless-stopped
check "the server's logs rotate" eq "$(docker inspect -f '{{index .HostConfig.LogConfig.Config "max-size"}}' "$sid")" 10m

# ---- 3. a session -----------------------------------------------------------------------------
field() { # field JSON_FILE PYTHON_EXPRESSION_OVER_d
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null
}
token=deploy-$RANDOM$RANDOM
cookie=$(python3 scripts/deploy/wsclient.py cookie "$BASE/") || abort "GET /container-terminal sets the identity cookie"
ok "GET /container-terminal sets the identity cookie"
s1=$tmp/session1.json
python3 scripts/deploy/wsclient.py session "$BASE" "$cookie" \
    whoami container-info "echo $token > ~/deploytest.txt" >"$s1" ||
    abort "a WebSocket session through the published port runs whoami, container-info, a file write"
user=$(field "$s1" 'd["ready"]["user"]')
container=$(field "$s1" 'd["ready"]["container"]')
ok "a WebSocket session opens: user $user on $container"
check "ready says container mode" eq "$(field "$s1" 'd["ready"]["mode"]')" container
check "the container is one of the test's pool" eq "${container%-[0-9]*}" "$NAME"
check "whoami prints the session's user" eq "$(field "$s1" 'd["results"][0]["output"]')" "$user"
info=$(field "$s1" 'd["results"][1]["output"]')
check "container-info names the container and the user" \
    bash -c '[[ $1 == *"$2"* && $1 == *"$3"* ]] || { echo "       container-info said: $1"; exit 1; }' _ "$info" "$container" "$user"
check "the file is written" eq "$(field "$s1" 'd["results"][2]["status"]')" 0
check "the shell exits with exit" eq "$(field "$s1" 'd["exit"]["type"]')" exit
container_id=$(docker inspect -f '{{.Id}}' "$container" 2>/dev/null)
check "user containers use CONTAINER_NETWORK (none)" eq "$(docker inspect -f '{{.HostConfig.NetworkMode}}' "$container" 2>/dev/null)" none
check "user containers mount WORKSPACE_VOLUME at /workspace" eq \
    "$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/workspace"}}{{.Name}}{{end}}{{end}}' "$container" 2>/dev/null)" "$WORKSPACE_VOLUME"
check "user containers mount their own agent directory at /run/termpool" eq \
    "$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/run/termpool"}}{{.Source}}{{end}}{{end}}' "$container" 2>/dev/null)" "$AGENT_DIR/$container"
check "the session agent's socket is the server's alone (uid 10001, mode 600)" eq \
    "$(stat -c %u:%a "$AGENT_DIR/$container/agent.sock" 2>/dev/null)" 10001:600
check "user containers never get the Docker socket" bash -c '! docker inspect -f "{{range .Mounts}}{{.Source}} {{end}}" "$1" | grep -q docker.sock' _ "$container"

# ---- 4. down, up, the same user / container / file ---------------------------------------------
timed compose-down "${COMPOSE[@]}" -f "$FILE" -p "$NAME" down
check "compose down (${secs[compose-down]}s)" eq "$?" 0
check "the server is gone" eq "$(server_id)" ""
check "the user containers keep running while the server is down" \
    eq "$(docker inspect -f '{{.State.Running}}' "$container" 2>/dev/null)" true
check "the store volume survives down" volume_exists "$DATA_VOLUME"

compose_up compose-up-again || abort "compose up -d again"
ok "compose up -d again (${secs[compose-up-again]}s)"
up_started=$SECONDS
check "/healthz answers 200 again" wait_healthz
secs[second-healthz]=$((SECONDS - up_started))
s2=$tmp/session2.json
python3 scripts/deploy/wsclient.py session "$BASE" "$cookie" whoami "cat ~/deploytest.txt" >"$s2" ||
    abort "the same cookie opens a session after down/up"
check "the same cookie finds the same user" eq "$(field "$s2" 'd["ready"]["user"]')" "$user"
check "... on the same container" eq "$(field "$s2" 'd["ready"]["container"]')" "$container"
check "... adopted, not recreated" eq "$(docker inspect -f '{{.Id}}' "$container" 2>/dev/null)" "$container_id"
check "... with the file" eq "$(field "$s2" 'd["results"][1]["output"]')" "$token"
check "... whoami still agrees" eq "$(field "$s2" 'd["results"][0]["output"]')" "$user"
other=$(python3 scripts/deploy/wsclient.py cookie "$BASE/") &&
    python3 scripts/deploy/wsclient.py session "$BASE" "$other" whoami >"$tmp/session3.json"
check "another browser is another user" bash -c '[ -n "$1" ] && [ "$1" != "$2" ]' _ "$(field "$tmp/session3.json" 'd["ready"]["user"]')" "$user"

# ---- 5. identity settings in .env reach the server: token mode with a TOKEN_FILE --------------
page_asks_for_token() { # GET /container-terminal: the login form, and no identity cookie
    python3 - "$BASE" <<'EOF'
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
c.request("GET", "/container-terminal")
r = c.getresponse()
body = r.read().decode(errors="replace")
cookie = any(k.lower() == "set-cookie" and "termpool_id=" in v for k, v in r.getheaders())
if r.status != 200 or "name=token" not in body or cookie:
    sys.exit(f"       HTTP {r.status}, identity cookie {cookie}, body: {body[:200]!r}")
EOF
}
ws_status() { # ws_status COOKIE: the HTTP status of a WebSocket upgrade with that cookie
    python3 - "$BASE" "$1" <<'EOF'
import base64, os, socket, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
s = socket.create_connection((u.hostname, u.port), timeout=30)
key = base64.b64encode(os.urandom(16)).decode()
s.sendall((f"GET /container-terminal/ws HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
           f"Origin: {u.scheme}://{u.netloc}\r\nCookie: {sys.argv[2]}\r\n\r\n").encode())
print(s.recv(4096).split(b" ", 2)[1].decode())
EOF
}
token_login() { # token_login TOKEN: the identity cookie the page exchanges the token for
    python3 - "$BASE" "$1" <<'EOF'
import http.client, sys, urllib.parse
u = urllib.parse.urlsplit(sys.argv[1])
c = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
c.request("GET", "/container-terminal?token=" + urllib.parse.quote(sys.argv[2]))
r = c.getresponse()
r.read()
for k, v in r.getheaders():
    if k.lower() == "set-cookie" and v.startswith("termpool_id="):
        print(v.split(";", 1)[0])
        sys.exit(0)
sys.exit(f"the token got no identity cookie (HTTP {r.status})")
EOF
}
# The file is the server's uid's alone, as the compose file asks.
secret=deploy-token-$RANDOM$RANDOM$RANDOM
as_root sh -c 'umask 077; printf "deployer:%s\n" "$1" >"$2" && chown 10001 "$2"' _ "$secret" "$TOKENS"
set_env_var .env IDENTITY_MODE token
set_env_var .env TOKEN_FILE "$TOKENS"
compose_up compose-up-token || abort "compose up -d with IDENTITY_MODE=token in .env"
ok "compose up -d with IDENTITY_MODE=token and TOKEN_FILE in .env (${secs[compose-up-token]}s)"
check "/healthz answers 200 in token mode" wait_healthz
check "the page asks for a token (IDENTITY_MODE from .env reached the server)" page_asks_for_token
check "the anonymous cookie opens no session any more (401)" eq "$(ws_status "$cookie")" 401
token_user=u$(printf '%s' "token:deployer" | sha256sum | cut -c1-12)
if token_cookie=$(token_login "$secret"); then
    ok "the token from TOKEN_FILE logs in (the file is mounted and readable)"
    python3 scripts/deploy/wsclient.py session "$BASE" "$token_cookie" whoami >"$tmp/session4.json"
    check "the token's user gets a session" eq "$(field "$tmp/session4.json" 'd["results"][0]["output"]')" "$token_user"
else
    bad "the token from TOKEN_FILE logs in (the file is mounted and readable)"
fi

# ---- 6. down -v -------------------------------------------------------------------------------
timed compose-down-v "${COMPOSE[@]}" -f "$FILE" -p "$NAME" down -v
check "compose down -v" eq "$?" 0
check "down -v removes the store volume" bash -c '! docker volume inspect "$1" >/dev/null 2>&1' _ "$DATA_VOLUME"
check "down -v keeps the external workspace volume" volume_exists "$WORKSPACE_VOLUME"
stack_up=0
remove_own
check "nothing of the test is left" eq \
    "$(docker ps -aq --filter "label=termpool.pool=$NAME"; docker volume ls -q --filter "name=^$NAME")" ""

say "timings: setup-dependencies ${secs[setup-dependencies]}s (again ${secs[setup-dependencies-warm]}s)," \
    "setup-container-mode ${secs[setup-container-mode]}s (again ${secs[setup-container-mode-warm]}s)," \
    "up ${secs[compose-up]}s + ${secs[first-healthz]}s to healthy /healthz, down ${secs[compose-down]}s," \
    "up again ${secs[compose-up-again]}s + ${secs[second-healthz]}s," \
    "up in token mode ${secs[compose-up-token]}s, total $((SECONDS - t0))s"
finish
