#!/usr/bin/env bash
# Makes sure a local PostgreSQL serves 127.0.0.1:5432 with the role and the database that
# sluice's tests and development use, then prints the development database URL on stdout.
#
# Safe to run any number of times: it installs PostgreSQL only when it is missing, starts the
# cluster only when it is down, and creates the role and the database only when they are
# absent. It also drops the databases that an interrupted SDK test run left behind
# (named sluice_test_*). Everything but the URL goes to stderr.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

readonly HOST=127.0.0.1
readonly PORT=5432
readonly ROLE=sluice
readonly PASSWORD=sluice
readonly DEV_DATABASE=sluice_dev
readonly URL="postgres://${ROLE}:${PASSWORD}@${HOST}:${PORT}/${DEV_DATABASE}"

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Runs a command as the postgres superuser, which authenticates over the local socket (peer).
as_postgres() {
    if [[ $(id -un) == postgres ]]; then
        "$@"
    elif [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        sudo -n -u postgres -- "$@"
    fi
}

# One SQL statement as the superuser; prints the unaligned result.
superuser_sql() {
    as_postgres psql --no-psqlrc --quiet --no-align --tuples-only -v ON_ERROR_STOP=1 \
        --dbname postgres --command "$1"
}

install_postgres() {
    [[ $(id -u) -eq 0 ]] || die "PostgreSQL is not installed and installing it needs root"
    log "installing PostgreSQL from Debian's packages"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 \
        || die "apt-get install postgresql failed"
}

# The newest installed PostgreSQL server's major version, e.g. 15; empty when none is.
# A version with a cluster under /etc/postgresql wins over one without.
detect_version() {
    local configured installed
    configured=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null \
        | sort -V | tail -n 1)
    installed=$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null \
        | awk -F/ '{print $5}' | sort -V | tail -n 1)
    if [[ -n $configured && -x /usr/lib/postgresql/$configured/bin/postgres ]]; then
        printf '%s\n' "$configured"
    else
        printf '%s\n' "$installed"
    fi
}

start_cluster() {
    local version=$1
    if [[ ! -d /etc/postgresql/$version/main ]]; then
        log "creating cluster $version/main"
        pg_createcluster "$version" main >&2 || die "pg_createcluster $version main failed"
    fi
    if ! pg_ctlcluster "$version" main status >/dev/null 2>&1; then
        log "starting cluster $version/main"
        pg_ctlcluster "$version" main start >&2 || die "pg_ctlcluster $version main start failed"
    fi
    pg_isready --host "$HOST" --port "$PORT" --timeout 30 >/dev/null \
        || die "PostgreSQL $version/main does not accept connections on $HOST:$PORT"
}

ensure_role_and_database() {
    # ALTER on every run keeps the password and rights right if someone changed them.
    superuser_sql "DO \$\$ BEGIN
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = '${ROLE}') THEN
            ALTER ROLE ${ROLE} LOGIN CREATEDB PASSWORD '${PASSWORD}';
        ELSE
            CREATE ROLE ${ROLE} LOGIN CREATEDB PASSWORD '${PASSWORD}';
        END IF;
    END \$\$;" >/dev/null || die "could not create or update role ${ROLE}"

    if [[ -z $(superuser_sql "SELECT 1 FROM pg_database WHERE datname = '${DEV_DATABASE}'") ]]; then
        log "creating database ${DEV_DATABASE}"
        superuser_sql "CREATE DATABASE ${DEV_DATABASE} OWNER ${ROLE}" >/dev/null \
            || die "could not create database ${DEV_DATABASE}"
    fi
}

drop_leftover_test_databases() {
    local name
    while IFS= read -r name; do
        [[ -n $name ]] || continue
        log "dropping leftover database ${name}"
        superuser_sql "DROP DATABASE IF EXISTS \"${name}\" WITH (FORCE)" >/dev/null \
            || die "could not drop database ${name}"
    done < <(superuser_sql "SELECT datname FROM pg_database WHERE datname LIKE 'sluice\_test\_%'")
}

# The check that matters to the tests: a password login over TCP as the sluice role.
check_tcp_login() {
    PGPASSWORD=$PASSWORD psql --no-psqlrc --quiet --tuples-only -v ON_ERROR_STOP=1 \
        --host "$HOST" --port "$PORT" --username "$ROLE" --dbname "$DEV_DATABASE" \
        --command 'SELECT 1' >/dev/null \
        || die "role ${ROLE} cannot log in to ${DEV_DATABASE} over TCP on ${HOST}:${PORT}"
}

main() {
    local version
    version=$(detect_version)
    if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ -z $version ]]; then
        install_postgres
        version=$(detect_version)
    fi
    [[ -n $version ]] || die "no PostgreSQL server is installed, even after apt-get install"
    command -v pg_ctlcluster >/dev/null 2>&1 || die "pg_ctlcluster is missing (postgresql-common)"

    start_cluster "$version"
    ensure_role_and_database
    drop_leftover_test_databases
    check_tcp_login

    log "PostgreSQL $version ready on ${HOST}:${PORT}"
    printf '%s\n' "$URL"
}

main "$@"
