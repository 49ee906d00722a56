#!/usr/bin/env bash
# Startup of the embedded default (SQLite in a fresh data directory, so every run creates the
# database, migrates it and creates the bootstrap key): the time from starting `sluice serve`
# to its first answered `GET /v1/health`. The baseline is the same binary printing
# `--version`, which is the bare cost of starting the process, so the ratio says how much the
# server's own start adds.
#
# Timing uses bash's microsecond clock and polls the health route over bash's /dev/tcp every
# 0.5 ms, so no fork of curl or sleep blurs the figure.
#
# Usage: bench/startup.sh    (BENCH_STARTS=10 by default, at least 5)
# Target: < 1 s to the first answered health check.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly TARGET_MS=1000
readonly POLL_LIMIT_S=10
STARTS=${BENCH_STARTS:-10}
((STARTS >= 5)) || die "BENCH_STARTS must be at least 5"

bench_init startup
build_sluice
exec {tick}<> <(:)

now_us() {
    local t=${EPOCHREALTIME//[.,]/}
    printf '%s\n' "$((10#$t))"
}

# Sets START_MS, the time to the first answered health check, and START_RSS_KB, the RSS then.
time_start() {
    local data_dir=$BENCH_TMP/data-$1 port t0 t1 pid deadline
    port=$(free_port)
    mkdir -p "$data_dir"
    t0=$(now_us)
    env -u DATABASE_URL SLUICE_LISTEN="127.0.0.1:$port" SLUICE_DATA_DIR="$data_dir" \
        SLUICE_BOOTSTRAP_API_KEY=$BENCH_KEY SLUICE_LOG=warn \
        "$SLUICE_BIN" serve >>"$BENCH_TMP/sluice.log" 2>&1 &
    pid=$!
    BENCH_PIDS+=("$pid")
    deadline=$((t0 + POLL_LIMIT_S * 1000000))
    until health_ok "$port"; do
        kill -0 "$pid" 2>/dev/null \
            || die "sluice exited during startup: $(tail -n 5 "$BENCH_TMP/sluice.log")"
        (($(now_us) < deadline)) \
            || die "sluice did not answer its health check within ${POLL_LIMIT_S}s"
        read -r -t 0.0005 -u "$tick" _ || true
    done
    t1=$(now_us)
    START_RSS_KB=$(rss_kb "$pid")
    stop_pid "$pid"
    forget_pid "$pid"
    rm -rf "$data_dir"
    START_MS=$(awk -v d="$((t1 - t0))" 'BEGIN { printf "%.2f", d / 1000 }')
}

# Sets VERSION_MS, the time for `sluice --version` to run and exit.
time_version() {
    local t0 t1
    t0=$(now_us)
    "$SLUICE_BIN" --version >/dev/null
    t1=$(now_us)
    VERSION_MS=$(awk -v d="$((t1 - t0))" 'BEGIN { printf "%.2f", d / 1000 }')
}

# One untimed round of each first, so that the binary is in the page cache for every run.
time_version
time_start warmup

start_ms=()
version_ms=()
rss=()
for ((run = 1; run <= STARTS; run++)); do
    time_version
    version_ms+=("$VERSION_MS")
    time_start "$run"
    start_ms+=("$START_MS")
    rss+=("$START_RSS_KB")
    log "run $run: first health answer after $START_MS ms; --version in $VERSION_MS ms"
done

start_median=$(median "${start_ms[@]}")
version_median=$(median "${version_ms[@]}")
rss_median=$(median "${rss[@]}")

echo
echo "== startup to the first answered health check," \
    "embedded SQLite, fresh data dir, $STARTS runs =="
print_machine
printf '%-40s %10s   %s\n' figure "median" runs
printf '%-40s %10s   %s\n' "start to first /v1/health answer (ms)" "$start_median" "${start_ms[*]}"
printf '%-40s %10s   %s\n' "baseline: sluice --version (ms)" "$version_median" "${version_ms[*]}"
printf '%-40s %10s   target < %s ms: %s (ratio to target %s)\n' "ratio start / --version" \
    "$(ratio "$start_median" "$version_median" 1)" "$TARGET_MS" \
    "$(verdict "$start_median" '<' "$TARGET_MS")" "$(ratio "$start_median" "$TARGET_MS" 3)"
printf '%-40s %10s\n' "RSS at the first health answer (MiB)" \
    "$(awk -v k="$rss_median" 'BEGIN { printf "%.1f", k / 1024 }')"
