# shellcheck shell=bash
# shellcheck disable=SC2034 # the WRK_*, WINDOW_* and DATABASE_* results are read by the scripts
# Shared functions of the benchmark scripts; sourced, never run. Each script that sources it
# runs on its own: it builds the release binary, starts what it measures on 127.0.0.1, and the
# EXIT trap set by bench_init stops exactly those processes (by PID) and drops exactly the
# databases it created.
#
# Settings read from the environment:
#   SLUICE_BIN        use this binary instead of building one
#   SLUICE_BUILT_FROM what that binary was built from, for the report (e.g. "commit abc1234")
#   CARGO_TARGET_DIR  where cargo builds (default: $HOME/.cache/sluice-target, as scripts/ use)
#   BENCH_DURATION    seconds per load run (default per script)
#   BENCH_REPEATS     runs per measurement, median reported (default 3, at least 3)
#   BENCH_QUIET_WAIT  wait up to this many seconds for a quiet machine first (default 0)

readonly BENCH_KEY=sk_bench_0123456789abcdef
readonly BENCH_PG_HOST=127.0.0.1
readonly BENCH_PG_PORT=5432
readonly BENCH_PG_ROLE=sluice
export PGPASSWORD=sluice

BENCH_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly BENCH_REPO
BENCH_TMP=
BENCH_PIDS=()
BENCH_DATABASES=()

log() { printf '%s: %s\n' "${BENCH_NAME:-bench}" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# Creates the scratch directory and the cleanup trap. Call once, first.
bench_init() {
    BENCH_NAME=$1
    BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sluice-bench.XXXXXX")
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
    cd "$BENCH_REPO" || exit 1
    wait_for_quiet
}

# Measures the background load, and with BENCH_QUIET_WAIT=N waits up to N seconds for it to
# fall below BENCH_QUIET_CORES (default 0.3) busy cores; sets BENCH_BUSY_BEFORE.
wait_for_quiet() {
    local limit=${BENCH_QUIET_WAIT:-0} waited=0
    BENCH_BUSY_BEFORE=$(busy_cores_over 1)
    while ((waited < limit)) \
        && awk -v b="$BENCH_BUSY_BEFORE" -v q="${BENCH_QUIET_CORES:-0.3}" 'BEGIN { exit !(b >= q) }'
    do
        ((waited == 0)) \
            && log "waiting up to ${limit}s for a quiet machine ($BENCH_BUSY_BEFORE cores busy)"
        BENCH_BUSY_BEFORE=$(busy_cores_over 5)
        waited=$((waited + 5))
    done
}

# The busy cores of the whole machine over the next N seconds: the background load.
busy_cores_over() {
    local m0 m1
    m0=$(machine_ticks)
    sleep "$1"
    m1=$(machine_ticks)
    awk -v m0="$m0" -v m1="$m1" -v cpus="$(nproc)" 'BEGIN {
        split(m0, a, " "); split(m1, b, " "); t = b[2] - a[2]
        if (t <= 0) print "n/a"; else printf "%.2f", (b[1] - a[1]) * cpus / t }'
}

bench_cleanup() {
    local pid db
    for pid in "${BENCH_PIDS[@]}"; do
        stop_pid "$pid"
    done
    for db in "${BENCH_DATABASES[@]}"; do
        drop_database "$db"
    done
    [[ -n $BENCH_TMP ]] && rm -rf "$BENCH_TMP"
}

# Drops a database of this run, retrying a few times. A plain DROP also stops an autovacuum
# worker busy in the database, which DROP ... WITH (FORCE) refuses to do for a role without
# superuser rights; FORCE is the fallback for sessions that are still closing.
drop_database() {
    local db=$1 attempt error force=()
    for attempt in 1 2 3 4; do
        error=$(dropdb --host "$BENCH_PG_HOST" --port "$BENCH_PG_PORT" \
            --username "$BENCH_PG_ROLE" --if-exists "${force[@]}" "$db" 2>&1) && return 0
        if ((${#force[@]})); then force=(); else force=(--force); fi
        sleep "$attempt"
    done
    log "could not drop database $db: $error"
}

# Sends SIGTERM to a process this script started and waits up to 10 s before SIGKILL.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

forget_pid() {
    local pid=$1 kept=() p
    for p in "${BENCH_PIDS[@]}"; do
        [[ $p == "$pid" ]] || kept+=("$p")
    done
    BENCH_PIDS=("${kept[@]}")
}

# Installs the Debian packages that provide missing commands (needs root).
ensure_commands() {
    local missing=() cmd pkg
    for cmd in "$@"; do
        command -v "$cmd" >/dev/null 2>&1 && continue
        case $cmd in
            pgbench | psql | createdb | dropdb) pkg=postgresql-client ;;
            *) pkg=$cmd ;;
        esac
        missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) -eq 0 ]] || die "missing ${missing[*]}; run: apt-get install -y ${missing[*]}"
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 \
        || die "apt-get install ${missing[*]} failed"
}

# Sets SLUICE_BIN to a release binary, building one unless SLUICE_BIN is already set.
build_sluice() {
    if [[ -n ${SLUICE_BIN:-} ]]; then
        [[ -x $SLUICE_BIN ]] || die "SLUICE_BIN=$SLUICE_BIN is not an executable"
        return 0
    fi
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
    log "building the release binary"
    cargo build --release --quiet >&2 || die "cargo build --release failed"
    SLUICE_BIN=$CARGO_TARGET_DIR/release/sluice
    SLUICE_BUILT_FROM="the work tree at commit $(git rev-parse --short HEAD 2>/dev/null || echo ?)"
    git diff --quiet HEAD -- src migrations Cargo.toml Cargo.lock 2>/dev/null \
        || SLUICE_BUILT_FROM+=" with uncommitted changes"
    export SLUICE_BUILT_FROM
}

pg_can_login() {
    psql --no-psqlrc --quiet --tuples-only --host "$BENCH_PG_HOST" --port "$BENCH_PG_PORT" \
        --username "$BENCH_PG_ROLE" --dbname postgres --command 'SELECT 1' >/dev/null 2>&1
}

# Makes sure PostgreSQL answers as the sluice role. scripts/postgres.sh is only called when the
# login fails, because it also drops the databases of interrupted test runs.
ensure_postgres() {
    pg_can_login && return 0
    log "PostgreSQL is not ready; running scripts/postgres.sh"
    scripts/postgres.sh >/dev/null || die "scripts/postgres.sh failed"
    pg_can_login || die "cannot log in to PostgreSQL as $BENCH_PG_ROLE"
}

# Creates a fresh database, dropped again on exit; sets DATABASE_NAME and DATABASE_URL_NEW.
# Call it directly: in $(…) the name would not reach the cleanup list.
create_database() {
    DATABASE_NAME="sluice_bench_$(date +%s)_$$_${#BENCH_DATABASES[@]}"
    createdb --host "$BENCH_PG_HOST" --port "$BENCH_PG_PORT" --username "$BENCH_PG_ROLE" \
        "$DATABASE_NAME" || die "createdb $DATABASE_NAME failed"
    BENCH_DATABASES+=("$DATABASE_NAME")
    BENCH_PG_DATABASE=$DATABASE_NAME
    DATABASE_URL_NEW=$(printf 'postgres://%s:%s@%s:%s/%s' "$BENCH_PG_ROLE" "$PGPASSWORD" \
        "$BENCH_PG_HOST" "$BENCH_PG_PORT" "$DATABASE_NAME")
}

# Runs SQL against a database of this run; prints the unaligned result.
sql() {
    local db=$1
    shift
    psql --no-psqlrc --quiet --no-align --tuples-only -v ON_ERROR_STOP=1 \
        --host "$BENCH_PG_HOST" --port "$BENCH_PG_PORT" --username "$BENCH_PG_ROLE" \
        --dbname "$db" "$@"
}

# A TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
    local port i
    for ((i = 0; i < 100; i++)); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            printf '%s\n' "$port"
            return 0
        fi
    done
    die "no free port found"
}

# True when GET /v1/health on the port answers 200. Uses bash's /dev/tcp, so a poll costs no
# fork and its timing is not blurred by starting curl.
health_ok() {
    local port=$1 line
    { exec 3<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
    printf 'GET /v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' >&3
    IFS= read -r -t 5 line <&3 || line=
    exec 3<&-
    [[ $line == "HTTP/1.1 200"* ]]
}

# Starts `sluice serve` on a fresh port and waits (at most 30 s) for its health check.
# Usage: start_sluice DATA_DIR [DATABASE_URL]; sets SLUICE_PID and SLUICE_PORT.
start_sluice() {
    local data_dir=$1 database_url=${2:-} i
    SLUICE_PORT=$(free_port)
    mkdir -p "$data_dir"
    if [[ -n $database_url ]]; then
        DATABASE_URL=$database_url SLUICE_LISTEN="127.0.0.1:$SLUICE_PORT" \
            SLUICE_DATA_DIR="$data_dir" SLUICE_BOOTSTRAP_API_KEY=$BENCH_KEY SLUICE_LOG=warn \
            "$SLUICE_BIN" serve >>"$BENCH_TMP/sluice.log" 2>&1 &
    else
        env -u DATABASE_URL SLUICE_LISTEN="127.0.0.1:$SLUICE_PORT" SLUICE_DATA_DIR="$data_dir" \
            SLUICE_BOOTSTRAP_API_KEY=$BENCH_KEY SLUICE_LOG=warn \
            "$SLUICE_BIN" serve >>"$BENCH_TMP/sluice.log" 2>&1 &
    fi
    SLUICE_PID=$!
    BENCH_PIDS+=("$SLUICE_PID")
    for ((i = 0; i < 300; i++)); do
        health_ok "$SLUICE_PORT" && return 0
        kill -0 "$SLUICE_PID" 2>/dev/null || break
        sleep 0.1
    done
    tail -n 20 "$BENCH_TMP/sluice.log" >&2
    die "sluice did not become healthy on port $SLUICE_PORT"
}

stop_sluice() {
    stop_pid "$SLUICE_PID"
    forget_pid "$SLUICE_PID"
}

# One API call to the running server; prints the body, fails on a non-2xx status.
# Usage: api METHOD PATH [BODY]
api() {
    local method=$1 path=$2 body=${3:-}
    local args=(--silent --show-error --fail-with-body --max-time 30 -X "$method"
        -H "Authorization: Bearer $BENCH_KEY" -H "X-Namespace: bench")
    [[ -n $body ]] && args+=(-H 'Content-Type: application/json' --data-binary "$body")
    curl "${args[@]}" "http://127.0.0.1:$SLUICE_PORT$path" || die "$method $path failed"
}

# Creates the namespace `bench` and the bucket `b` with a title and an image; prints the
# bucket id.
create_bench_bucket() {
    api POST /v1/namespaces '{"namespace_name":"bench"}' >/dev/null
    api POST /v1/buckets '{"bucket_name":"b","bucket_schema":{"properties":{
        "title":{"type":"string"},"image":{"type":"image"}}}}' | jq -er .bucket_id
}

bucket_object_count() {
    api GET "/v1/buckets/$1" | jq -er .object_count
}

# The body of one single-object create: a title and an image blob given by URL. The blob says
# `canonicalize_source: false`, so the server keeps the URL as a reference: no bytes are
# written, and the server does not fetch the URL (which would be traffic off this machine).
single_object_json() {
    printf '{"title":"bench object","blobs":[{"property":"image","type":"image","data":"%s",%s}]}' \
        https://example.com/cat.jpg '"canonicalize_source":false'
}

# Creates one object in the bucket and dies unless its URL blob stays a reference that the
# server will not fetch, so that a change in the server cannot turn the benchmark into a
# stream of outside requests.
check_no_fetch() {
    local bucket_id=$1 mirror
    mirror=$(api POST "/v1/buckets/$bucket_id/objects" "$(single_object_json)" \
        | jq -r '.blobs[0].properties.mirror // "absent"')
    [[ $mirror == off || $mirror == absent ]] \
        || die "the server would fetch the benchmark's blob URL (mirror: $mirror); refusing to run"
}

# The body of one batch create with N objects.
batch_json() {
    local n=$1 i sep=
    printf '{"objects":['
    for ((i = 0; i < n; i++)); do
        printf '%s' "$sep"
        single_object_json
        sep=,
    done
    printf ']}'
}

# Writes the wrk script that POSTs BODY_FILE to PATH. It stops a thread after
# BENCH_MAX_REQUESTS / threads responses, so a run is bounded in requests as well as in time,
# and prints one machine-readable line at the end.
write_wrk_script() {
    local out=$1 path=$2 body_file=$3
    cat >"$out" <<LUA
local body_file = io.open("$body_file", "rb")
wrk.method = "POST"
wrk.path = "$path"
wrk.body = body_file:read("*a")
body_file:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $BENCH_KEY"
wrk.headers["X-Namespace"] = "bench"

local cap = tonumber(os.getenv("BENCH_THREAD_CAP") or "0")
local seen = 0
local hit_cap = false

function response(status, headers, body)
    seen = seen + 1
    if cap > 0 and seen >= cap then
        hit_cap = true
        wrk.thread:stop()
    end
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "WRK requests=%d duration_us=%d status_errors=%d socket_errors=%d "
            .. "p50_ms=%.2f p99_ms=%.2f\n",
        summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
        latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
LUA
}

# Runs wrk and sets WRK_RATE (successful requests per second), WRK_P50 and WRK_P99 (ms) and
# WRK_REQUESTS. Dies on socket errors or non-2xx answers: a failing run must not pass as a
# fast one. Usage: run_wrk SCRIPT CONNECTIONS THREADS DURATION_S MAX_REQUESTS
run_wrk() {
    local script=$1 conns=$2 threads=$3 duration=$4 max_requests=$5 out line
    out=$BENCH_TMP/wrk.out
    BENCH_THREAD_CAP=$((max_requests / threads)) measure_window "$duration" "$out" \
        wrk --latency -t "$threads" -c "$conns" -d "${duration}s" --timeout 10s -s "$script" \
        "http://127.0.0.1:$SLUICE_PORT" \
        || {
            cat "$out" >&2
            die "wrk failed"
        }
    line=$(grep '^WRK ' "$out") || die "wrk printed no summary: $(cat "$out")"
    local duration_us status_errors socket_errors
    WRK_REQUESTS=$(field "$line" requests)
    duration_us=$(field "$line" duration_us)
    status_errors=$(field "$line" status_errors)
    socket_errors=$(field "$line" socket_errors)
    WRK_P50=$(field "$line" p50_ms)
    WRK_P99=$(field "$line" p99_ms)
    ((status_errors == 0 && socket_errors == 0)) \
        || die "wrk saw $status_errors non-2xx answers and $socket_errors socket errors"
    if ((WRK_REQUESTS >= max_requests)); then
        log "warning: the run stopped at its request cap ($max_requests); its rate is understated"
    fi
    WRK_RATE=$(awk -v r="$WRK_REQUESTS" -v d="$duration_us" \
        'BEGIN { printf "%.1f", r / (d / 1e6) }')
}

# Runs a load generator in the background, writing its output to OUT, and records where the
# CPU went in the middle of its run (leaving out a short ramp at each end, so that every
# connection of the run is alive at both samples). Sets WINDOW_CPU to "sluice S, postgres P,
# load generator G, rest R, idle I" in cores; WINDOW_BUSY, WINDOW_SLUICE, WINDOW_POSTGRES and
# WINDOW_GENERATOR to the busy cores of the machine and of each part; and saves a `top`
# snapshot into BENCH_TMP/top.last. "rest" is everything else that ran: kernel threads (disk
# flushes) and other work on a shared machine.
# Usage: measure_window DURATION_S OUT COMMAND...
measure_window() {
    local duration=$1 out=$2
    shift 2
    local pid rc=0 edge half s0 p0 g0 m0 s1 p1 g1 m1
    edge=$(awk -v d="$duration" 'BEGIN { e = d / 5; if (e > 1) e = 1; print e }')
    half=$(awk -v d="$duration" -v e="$edge" 'BEGIN { print (d - 2 * e) / 2 }')

    "$@" >"$out" 2>&1 &
    pid=$!
    BENCH_PIDS+=("$pid")
    sleep "$edge"
    s0=$(proc_ticks "${SLUICE_PID:-0}")
    g0=$(proc_ticks "$pid")
    p0=$(postgres_ticks)
    m0=$(machine_ticks)
    sleep "$half"
    COLUMNS=120 top -b -n1 -w 120 2>/dev/null | head -n 16 >"$BENCH_TMP/top.last" || true
    sleep "$half"
    m1=$(machine_ticks)
    p1=$(postgres_ticks)
    g1=$(proc_ticks "$pid")
    s1=$(proc_ticks "${SLUICE_PID:-0}")
    wait "$pid" || rc=$?
    forget_pid "$pid"

    local split
    split=$(awk -v s="$((s1 - s0))" -v p="$((p1 - p0))" -v g="$((g1 - g0))" -v m0="$m0" \
        -v m1="$m1" -v cpus="$(nproc)" 'BEGIN {
        split(m0, a, " "); split(m1, b, " ")
        busy = b[1] - a[1]; total = b[2] - a[2]
        if (total <= 0) { print "0|0|0|0|n/a"; exit }
        if (p < 0) p = 0
        k = cpus / total; r = busy - s - p - g; if (r < 0) r = 0
        printf "%.2f|%.3f|%.3f|%.3f|", busy * k, s * k, p * k, g * k
        printf "sluice %.2f, postgres %.2f, load generator %.2f, rest %.2f, idle %.2f cores",
            s * k, p * k, g * k, r * k, (total - busy) * k }')
    IFS='|' read -r WINDOW_BUSY WINDOW_SLUICE WINDOW_POSTGRES WINDOW_GENERATOR WINDOW_CPU \
        <<<"$split"
    return "$rc"
}

# The value of key=value in a line of such pairs.
field() {
    local line=$1 key=$2 pair
    for pair in $line; do
        [[ $pair == "$key="* ]] && {
            printf '%s\n' "${pair#*=}"
            return 0
        }
    done
    return 1
}

# The median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR % 2) printf "%.6g\n", v[(NR + 1) / 2]
        else printf "%.6g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# CPU microseconds per operation: CORES busy at RATE operations per second.
cpu_us_per_op() {
    awk -v c="$1" -v r="$2" 'BEGIN { if (r == 0) print "n/a"; else printf "%.0f\n", c * 1e6 / r }'
}

# a / b with the given number of decimals (default 2).
ratio() {
    awk -v a="$1" -v b="$2" -v d="${3:-2}" \
        'BEGIN { if (b == 0) print "n/a"; else printf "%.*f\n", d, a / b }'
}

# Prints "PASS" or "MISS" for VALUE OP TARGET, where OP is one of >= or <.
verdict() {
    awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN {
        ok = (op == ">=") ? (v >= t) : (v < t); print ok ? "PASS" : "MISS" }'
}

rss_kb() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# Samples the RSS of PID every 50 ms until stopped with stop_rss_sampler, keeping the peak
# (kB) in FILE. Only bash builtins run in the loop, so sampling costs next to no CPU.
# Sets RSS_SAMPLER_PID.
start_rss_sampler() {
    local pid=$1 file=$2
    echo 0 >"$file"
    (
        exec {tick}<> <(:)
        peak=0
        while [[ -r /proc/$pid/status ]]; do
            while read -r key value _; do
                [[ $key == VmRSS: ]] || continue
                if ((value > peak)); then
                    peak=$value
                    echo "$peak" >"$file"
                fi
                break
            done <"/proc/$pid/status"
            read -r -t 0.05 -u "$tick" _ || true
        done
    ) &
    RSS_SAMPLER_PID=$!
    BENCH_PIDS+=("$RSS_SAMPLER_PID")
}

stop_rss_sampler() {
    stop_pid "$RSS_SAMPLER_PID"
    forget_pid "$RSS_SAMPLER_PID"
}

# CPU time in clock ticks: of one process (utime + stime), of all processes named postgres,
# and of the whole machine (busy, total), for "where did the CPU go" during a run.
proc_ticks() {
    local line rest fields
    { IFS= read -r line <"/proc/$1/stat"; } 2>/dev/null || {
        echo 0
        return 0
    }
    rest=${line##*) }
    read -ra fields <<<"$rest"
    echo $((fields[11] + fields[12]))
}
# Backends of other databases (say, a test suite running next to the benchmark) are left out
# when BENCH_PG_DATABASE names this run's database; the shared background processes
# (WAL writer, checkpointer, ...) are always counted.
postgres_ticks() {
    local f dir line rest fields title sum=0
    for f in /proc/[0-9]*/stat; do
        { IFS= read -r line <"$f"; } 2>/dev/null || continue
        [[ $line == *"(postgres) "* ]] || continue
        if [[ -n ${BENCH_PG_DATABASE:-} ]]; then
            dir=${f%/stat}
            { IFS= read -r -d '' title <"$dir/cmdline"; } 2>/dev/null || true
            if [[ $title == *"127.0.0.1("* || $title == *"[local]"* ]]; then
                [[ $title == *" $BENCH_PG_DATABASE "* ]] || continue
            fi
        fi
        rest=${line##*) }
        read -ra fields <<<"$rest"
        sum=$((sum + fields[11] + fields[12]))
    done
    echo "$sum"
}
machine_ticks() {
    awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; print busy, busy + $5 + $6 }' /proc/stat
}

print_machine() {
    local cpus model
    cpus=$(nproc)
    model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    printf 'machine: %s CPUs (%s), %s MB RAM, %s\n' "$cpus" "${model:-unknown}" \
        "$(awk '/^MemTotal:/ { print int($2 / 1024) }' /proc/meminfo)" "$(uname -sr)"
    printf 'background load before the run: %s of %s cores busy\n' "$BENCH_BUSY_BEFORE" "$cpus"
    printf 'date: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    [[ -n ${SLUICE_BIN:-} ]] || return 0
    printf 'binary: %s, release build of %s\n' "$("$SLUICE_BIN" --version)" \
        "${SLUICE_BUILT_FROM:-unknown source (SLUICE_BIN given; set SLUICE_BUILT_FROM to say)}"
}

repeats() {
    local n=${BENCH_REPEATS:-3}
    ((n >= 3)) || die "BENCH_REPEATS must be at least 3"
    printf '%s\n' "$n"
}
