#!/usr/bin/env bash
# Batch create: `POST /v1/buckets/{id}/objects/batch` with 100 objects a request, at a few
# concurrency levels, on PostgreSQL and on SQLite, in objects created per second. The baseline
# is the single-object endpoint at the same concurrency on the same server in the same run, so
# the ratio says what batching buys.
#
# Usage: bench/batch_create.sh    (BENCH_DURATION=8 BENCH_REPEATS=3 by default;
#                                  BENCH_CONCURRENCY="4 8" and BENCH_BACKENDS="postgres sqlite")
# Target: >= 10,000 objects/s with batches on PostgreSQL.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly BATCH_SIZE=100
readonly WARMUP_S=3
readonly TARGET_PG_BATCH=10000
DURATION=${BENCH_DURATION:-8}
REPEATS=$(repeats)
read -ra CONCURRENCY <<<"${BENCH_CONCURRENCY:-4 8}"
read -ra BACKENDS <<<"${BENCH_BACKENDS:-postgres sqlite}"
# Generous bounds on requests per run; at the cap the run stops and says so.
readonly MAX_BATCH_REQUESTS=$((2000 * DURATION))
readonly MAX_SINGLE_REQUESTS=$((20000 * DURATION))

bench_init batch_create
ensure_commands wrk curl jq
build_sluice
for backend in "${BACKENDS[@]}"; do
    case $backend in
        postgres)
            ensure_commands psql createdb dropdb
            ensure_postgres
            ;;
        sqlite) ;;
        *) die "unknown backend $backend; expected postgres or sqlite" ;;
    esac
done

single_object_json >"$BENCH_TMP/object.json"
batch_json "$BATCH_SIZE" >"$BENCH_TMP/batch.json"
RESULTS=()

# Measures one backend on a fresh server and store; appends lines to RESULTS.
measure_backend() {
    local backend=$1 database_url='' bucket_id answered=0 c run threads
    if [[ $backend == postgres ]]; then
        create_database
        database_url=$DATABASE_URL_NEW
    fi
    start_sluice "$BENCH_TMP/data-$backend" "$database_url"
    bucket_id=$(create_bench_bucket)
    check_no_fetch "$bucket_id"

    # One checked request first: a batch that does not create all its objects must not count.
    local succeeded
    succeeded=$(api POST "/v1/buckets/$bucket_id/objects/batch" "$(cat "$BENCH_TMP/batch.json")" \
        | jq -er .succeeded_count)
    ((succeeded == BATCH_SIZE)) || die "a batch of $BATCH_SIZE created only $succeeded objects"
    answered=$BATCH_SIZE

    write_wrk_script "$BENCH_TMP/batch.lua" "/v1/buckets/$bucket_id/objects/batch" \
        "$BENCH_TMP/batch.json"
    write_wrk_script "$BENCH_TMP/single.lua" "/v1/buckets/$bucket_id/objects" \
        "$BENCH_TMP/object.json"
    log "$backend: warming up (${WARMUP_S}s per endpoint)"
    run_wrk "$BENCH_TMP/batch.lua" 2 2 "$WARMUP_S" "$MAX_BATCH_REQUESTS"
    answered=$((answered + WRK_REQUESTS * BATCH_SIZE))
    run_wrk "$BENCH_TMP/single.lua" 2 2 "$WARMUP_S" "$MAX_SINGLE_REQUESTS"
    answered=$((answered + WRK_REQUESTS))

    for c in "${CONCURRENCY[@]}"; do
        threads=$((c < 2 ? c : 2))
        local batch_rates=() single_rates=() batch_cpu single_cpu objects
        # Batch and single alternate, so that a noisy neighbour hurts both alike.
        for ((run = 1; run <= REPEATS; run++)); do
            run_wrk "$BENCH_TMP/batch.lua" "$c" "$threads" "$DURATION" "$MAX_BATCH_REQUESTS"
            objects=$(awk -v r="$WRK_RATE" -v n="$BATCH_SIZE" 'BEGIN { printf "%.1f", r * n }')
            batch_rates+=("$objects")
            answered=$((answered + WRK_REQUESTS * BATCH_SIZE))
            batch_cpu=$WINDOW_CPU
            log "$backend c=$c run $run: batch $objects objects/s" \
                "(p50 $WRK_P50 ms, p99 $WRK_P99 ms; CPU $WINDOW_CPU)"
            cp "$BENCH_TMP/top.last" "$BENCH_TMP/top.$backend.batch"

            run_wrk "$BENCH_TMP/single.lua" "$c" "$threads" "$DURATION" "$MAX_SINGLE_REQUESTS"
            single_rates+=("$WRK_RATE")
            answered=$((answered + WRK_REQUESTS))
            single_cpu=$WINDOW_CPU
            log "$backend c=$c run $run: single $WRK_RATE objects/s" \
                "(p50 $WRK_P50 ms, p99 $WRK_P99 ms; CPU $WINDOW_CPU)"
        done
        local batch_median single_median
        batch_median=$(median "${batch_rates[@]}")
        single_median=$(median "${single_rates[@]}")
        RESULTS+=("$backend|$c|$batch_median|${batch_rates[*]}|$single_median|${single_rates[*]}|$(
            ratio "$batch_median" "$single_median" 1)|$batch_cpu|$single_cpu")
    done

    # Every answered create must be an object; wrk's last in-flight requests may add a few more.
    local count
    count=$(bucket_object_count "$bucket_id")
    ((count >= answered)) || die "$backend: only $count objects for $answered answered creates"
    log "$backend: $count objects stored for $answered answered creates"
    stop_sluice
}

for backend in "${BACKENDS[@]}"; do
    measure_backend "$backend"
done

echo
echo "== batch create ($BATCH_SIZE objects a request) vs single create, ${DURATION}s x $REPEATS =="
print_machine
printf '%-9s %4s %14s %14s %8s   %s\n' backend conc "batch obj/s" "single obj/s" ratio \
    "target (batch, PostgreSQL)"
for line in "${RESULTS[@]}"; do
    IFS='|' read -r backend c batch_median batch_runs single_median single_runs r _ _ <<<"$line"
    target=-
    if [[ $backend == postgres ]]; then
        target=">= $TARGET_PG_BATCH: $(verdict "$batch_median" '>=' "$TARGET_PG_BATCH")"
    fi
    printf '%-9s %4s %14s %14s %8s   %s\n' "$backend" "$c" "$batch_median" "$single_median" \
        "$r" "$target"
done
echo "runs (objects/s) and CPU split of the last run of each:"
for line in "${RESULTS[@]}"; do
    IFS='|' read -r backend c _ batch_runs _ single_runs _ batch_cpu single_cpu <<<"$line"
    printf '  %s c=%s batch:  %s  [%s]\n' "$backend" "$c" "$batch_runs" "$batch_cpu"
    printf '  %s c=%s single: %s  [%s]\n' "$backend" "$c" "$single_runs" "$single_cpu"
done
for backend in "${BACKENDS[@]}"; do
    echo "top during the last $backend batch run:"
    sed 's/^/    /' "$BENCH_TMP/top.$backend.batch"
done
