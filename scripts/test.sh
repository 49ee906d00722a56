#!/usr/bin/env bash
# The whole test suite, from a fresh machine to a verdict:
#
#   1. PostgreSQL up, with the sluice role (scripts/postgres.sh);
#   2. the storage emulators and a local embeddings server (scripts/services.sh,
#      scripts/embed-server.sh);
#   3. cargo test --locked over every target, on SQLite and on PostgreSQL
#      (the Rust tests create one database per test through SLUICE_TEST_POSTGRES_URL);
#   4. the debug binary built;
#   5. the official-SDK compatibility suite (tests/sdk, pytest) against that binary,
#      once on SQLite and once on PostgreSQL, in a virtualenv at .venv.
#
# Arguments are passed on to pytest, e.g. `scripts/test.sh -k objects -x`.
# Exits non-zero on any failure, including a pytest run that collected no test.
# The only processes it starts are its children; the SDK suite's fixtures stop the servers
# they start.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
readonly PYTHON="${SLUICE_PYTHON:-python3}"
readonly VENV=.venv
readonly REQUIREMENTS=tests/sdk/requirements.txt

step() { printf '\n==> %s\n' "$*" >&2; }
die() {
    printf 'test.sh: error: %s\n' "$*" >&2
    exit 1
}

step "PostgreSQL"
SLUICE_TEST_POSTGRES_URL=$(scripts/postgres.sh)
export SLUICE_TEST_POSTGRES_URL

step "storage emulators (moto, fake-gcs-server, Azurite, s3s-fs)"
services_env=$(scripts/services.sh up) || die "scripts/services.sh up failed"
eval "$services_env"
trap 'scripts/services.sh down' EXIT

step "embeddings server (all-MiniLM-L6-v2, OpenAI-compatible)"
embed_env=$(scripts/embed-server.sh up) || die "scripts/embed-server.sh up failed"
eval "$embed_env"
export SLUICE_TEST_REQUIRE_EMBEDDINGS=1
trap 'scripts/embed-server.sh down; scripts/services.sh down' EXIT

step "cargo test (all targets)"
cargo test --locked --all-targets
if [[ -f src/lib.rs ]]; then
    step "cargo test (doc tests)"
    cargo test --locked --doc
fi

step "cargo build (debug binary)"
cargo build --locked --bin sluice
export SLUICE_BIN="$CARGO_TARGET_DIR/debug/sluice"
[[ -x $SLUICE_BIN ]] || die "cargo build left no binary at $SLUICE_BIN"

step "Python virtualenv ($VENV)"
if ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "'$PYTHON -m venv' failed; install the venv module"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"

step "SDK compatibility suite (SQLite, PostgreSQL, and blobs on S3)"
status=0
"$VENV/bin/python" -m pytest tests/sdk --backend sqlite --backend postgres --backend s3 "$@" \
    || status=$?
if ((status == 5)); then
    die "pytest collected no test"
elif ((status != 0)); then
    die "the SDK compatibility suite failed (pytest exit code $status)"
fi

step "all tests passed"
