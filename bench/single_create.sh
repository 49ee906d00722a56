#!/usr/bin/env bash
# Single-object create on PostgreSQL: 32 concurrent connections POST one object each
# (`POST /v1/buckets/{id}/objects`, a title and an image given by URL, so no blob bytes are
# written) and the objects created per second are compared with what PostgreSQL itself does
# with the same INSERT: pgbench at 32 clients inserting the same row shape into a copy of the
# `objects` table in the same database. Also reports sluice's resident memory when idle after
# start and its peak under load.
#
# Usage: bench/single_create.sh    (BENCH_DURATION=10 BENCH_REPEATS=3 by default)
# Targets: sluice/pgbench >= 0.7; RSS < 50 MiB idle, < 150 MiB under load.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly CONNECTIONS=32
readonly WRK_THREADS=2
readonly PGBENCH_THREADS=2
readonly WARMUP_S=3
DURATION=${BENCH_DURATION:-10}
REPEATS=$(repeats)
# A generous bound on requests per run; at the cap the run stops and says so.
readonly MAX_REQUESTS=$((20000 * DURATION))

bench_init single_create
ensure_commands wrk curl jq psql pgbench createdb dropdb
build_sluice
ensure_postgres

create_database
database=$DATABASE_NAME
start_sluice "$BENCH_TMP/data" "$DATABASE_URL_NEW"
sleep 1
idle_rss_kb=$(rss_kb "$SLUICE_PID")

bucket_id=$(create_bench_bucket)
check_no_fetch "$bucket_id"
single_object_json >"$BENCH_TMP/object.json"
write_wrk_script "$BENCH_TMP/single.lua" "/v1/buckets/$bucket_id/objects" "$BENCH_TMP/object.json"
log "warming up sluice (${WARMUP_S}s)"
run_wrk "$BENCH_TMP/single.lua" "$CONNECTIONS" "$WRK_THREADS" "$WARMUP_S" "$MAX_REQUESTS"
answered=$WRK_REQUESTS

# The baseline table: the same columns, defaults, indexes and foreign key as `objects`. The
# pgbench script inserts with sluice's own statement (ON CONFLICT DO NOTHING RETURNING id),
# passing the document as a parameter, as sluice does, so PostgreSQL parses the JSON per row.
sql "$database" <<'SQL'
CREATE TABLE objects_baseline (LIKE objects INCLUDING ALL);
ALTER TABLE objects_baseline ADD FOREIGN KEY (bucket_id) REFERENCES buckets (id);
SQL
IFS='|' read -r org_id namespace_id sample_doc < <(sql "$database" \
    -c "SELECT org_id, namespace_id, doc::text FROM objects WHERE bucket_id = '$bucket_id' LIMIT 1")
cat >"$BENCH_TMP/insert.sql" <<'SQL'
INSERT INTO objects_baseline
    (id, org_id, namespace_id, bucket_id, doc, size_bytes, idempotency_key, unique_key)
VALUES ('obj_' || substr(md5(random()::text), 1, 20), :org_id, :namespace_id, :bucket_id,
    CAST(:doc AS jsonb), 0, NULL, NULL)
ON CONFLICT DO NOTHING RETURNING id;
SQL
pgbench_args=(--no-vacuum --protocol=prepared --client "$CONNECTIONS" --jobs "$PGBENCH_THREADS"
    --file "$BENCH_TMP/insert.sql" --define "org_id=$org_id" --define "namespace_id=$namespace_id"
    --define "bucket_id=$bucket_id" --define "doc=$sample_doc"
    --host "$BENCH_PG_HOST" --port "$BENCH_PG_PORT" --username "$BENCH_PG_ROLE")

# Sets PGBENCH_TPS from one run of DURATION seconds.
run_pgbench() {
    local duration=$1 out=$BENCH_TMP/pgbench.out
    measure_window "$duration" "$out" pgbench "${pgbench_args[@]}" --time "$duration" "$database" \
        || {
            cat "$out" >&2
            die "pgbench failed"
        }
    PGBENCH_TPS=$(awk '/^tps = / { print $3; exit }' "$out")
    [[ -n $PGBENCH_TPS ]] || die "pgbench printed no tps: $(cat "$out")"
    local failed
    failed=$(awk -F': ' '/^number of failed transactions/ { print $2 + 0 }' "$out")
    ((${failed:-0} == 0)) || die "pgbench had $failed failed transactions"
}

log "warming up pgbench (${WARMUP_S}s)"
run_pgbench "$WARMUP_S"

# sluice and pgbench alternate, so that a noisy neighbour hurts both alike.
sluice_rates=()
pgbench_rates=()
sluice_cpu_us=()
postgres_cpu_us=()
baseline_postgres_cpu_us=()
baseline_client_cpu_us=()
start_rss_sampler "$SLUICE_PID" "$BENCH_TMP/rss.peak"
for ((run = 1; run <= REPEATS; run++)); do
    run_wrk "$BENCH_TMP/single.lua" "$CONNECTIONS" "$WRK_THREADS" "$DURATION" "$MAX_REQUESTS"
    sluice_rates+=("$WRK_RATE")
    sluice_cpu_us+=("$(cpu_us_per_op "$WINDOW_SLUICE" "$WRK_RATE")")
    postgres_cpu_us+=("$(cpu_us_per_op "$WINDOW_POSTGRES" "$WRK_RATE")")
    answered=$((answered + WRK_REQUESTS))
    log "run $run: sluice $WRK_RATE objects/s (p50 $WRK_P50 ms, p99 $WRK_P99 ms; CPU $WINDOW_CPU)"
    cp "$BENCH_TMP/top.last" "$BENCH_TMP/top.sluice"

    run_pgbench "$DURATION"
    pgbench_rates+=("$PGBENCH_TPS")
    baseline_postgres_cpu_us+=("$(cpu_us_per_op "$WINDOW_POSTGRES" "$PGBENCH_TPS")")
    baseline_client_cpu_us+=("$(cpu_us_per_op "$WINDOW_GENERATOR" "$PGBENCH_TPS")")
    log "run $run: pgbench $PGBENCH_TPS tx/s (CPU $WINDOW_CPU)"
    cp "$BENCH_TMP/top.last" "$BENCH_TMP/top.pgbench"
done
stop_rss_sampler
peak_rss_kb=$(cat "$BENCH_TMP/rss.peak")
after_rss_kb=$(rss_kb "$SLUICE_PID")

# Every answered create must be a row; wrk's last in-flight requests may add a few more.
rows=$(sql "$database" -c "SELECT count(*) FROM objects WHERE bucket_id = '$bucket_id'")
((rows >= answered)) || die "only $rows rows for $answered answered creates"

sluice_median=$(median "${sluice_rates[@]}")
pgbench_median=$(median "${pgbench_rates[@]}")
throughput_ratio=$(ratio "$sluice_median" "$pgbench_median")
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

echo
echo "== single-object create, PostgreSQL, $CONNECTIONS connections, ${DURATION}s x $REPEATS =="
print_machine
printf '%-34s %12s   %s\n' "figure" "median" "runs"
printf '%-34s %12s   %s\n' "sluice objects/s (wrk)" "$sluice_median" "${sluice_rates[*]}"
printf '%-34s %12s   %s\n' "baseline: pgbench INSERT tx/s" "$pgbench_median" "${pgbench_rates[*]}"
printf '%-34s %12s   target >= 0.70: %s\n' "ratio sluice / pgbench" "$throughput_ratio" \
    "$(verdict "$throughput_ratio" '>=' 0.7)"
printf '%-34s %12s   target < 50 MiB: %s (ratio to target %s)\n' "RSS idle after start (MiB)" \
    "$(mib "$idle_rss_kb")" "$(verdict "$idle_rss_kb" '<' 51200)" "$(ratio "$idle_rss_kb" 51200)"
printf '%-34s %12s   target < 150 MiB: %s (ratio to idle %s, to target %s)\n' \
    "RSS peak under load (MiB)" "$(mib "$peak_rss_kb")" "$(verdict "$peak_rss_kb" '<' 153600)" \
    "$(ratio "$peak_rss_kb" "$idle_rss_kb" 1)" "$(ratio "$peak_rss_kb" 153600)"
printf '%-34s %12s\n' "RSS idle after the load (MiB)" "$(mib "$after_rss_kb")"
printf '%-34s %12s   %s\n' "sluice CPU per object (us)" "$(median "${sluice_cpu_us[@]}")" \
    "${sluice_cpu_us[*]}"
printf '%-34s %12s   %s\n' "postgres CPU per sluice insert (us)" \
    "$(median "${postgres_cpu_us[@]}")" "${postgres_cpu_us[*]}"
printf '%-34s %12s   %s\n' "postgres CPU per pgbench tx (us)" \
    "$(median "${baseline_postgres_cpu_us[@]}")" "${baseline_postgres_cpu_us[*]}"
printf '%-34s %12s   %s\n' "pgbench client CPU per tx (us)" \
    "$(median "${baseline_client_cpu_us[@]}")" "${baseline_client_cpu_us[*]}"
printf 'rows written: %s for %s answered creates\n' "$rows" "$answered"
echo "top during the last sluice run:"
sed 's/^/    /' "$BENCH_TMP/top.sluice"
echo "top during the last pgbench run:"
sed 's/^/    /' "$BENCH_TMP/top.pgbench"
