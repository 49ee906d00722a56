#!/usr/bin/env bash
# Batch processing end to end on PostgreSQL: a batch of small text objects is created,
# submitted, and polled until it is COMPLETED; the figure is objects per second from submit to
# the terminal status. The same objects are processed by text_extractor (normalisation,
# language, token counts, chunks) and by passthrough_extractor, whose time per object is the
# engine's own overhead: claiming the slices, reading the objects and blobs, verifying them,
# and writing outcomes and documents.
#
# The baseline, in the same run: the store's floor for the same writes, that is PostgreSQL
# inserting as many document rows of the same size in transactions of the same size, driven by
# one psql session. The ratio says what share of the floor sluice reaches.
#
# Usage: bench/batch_process.sh    (BENCH_OBJECTS=10000 BENCH_REPEATS=3 by default)
# Targets: text_extractor >= 2,000 objects/s; passthrough overhead < 1 ms per object.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly OBJECTS=${BENCH_OBJECTS:-10000}
readonly GROUP=64
readonly TARGET_TEXT_RATE=2000
readonly TARGET_OVERHEAD_MS=1
REPEATS=$(repeats)

bench_init batch_process
ensure_commands curl jq psql createdb dropdb
build_sluice
ensure_postgres
create_database
start_sluice "$BENCH_TMP/data" "$DATABASE_URL_NEW"

# One namespace per extractor, each with a bucket of the same objects.
setup_namespace() {
    local name=$1 extractor=$2 bucket i
    api POST /v1/namespaces "{\"namespace_name\":\"$name\",\"feature_extractors\":[
        {\"feature_extractor_name\":\"$extractor\",\"version\":\"v1\"}]}" >/dev/null
    bucket=$(curl --silent --show-error --fail-with-body -X POST \
        -H "Authorization: Bearer $BENCH_KEY" -H "X-Namespace: $name" \
        -H 'Content-Type: application/json' \
        --data-binary '{"bucket_name":"texts","bucket_schema":{"properties":{
            "content":{"type":"text"},"title":{"type":"string"}}}}' \
        "http://127.0.0.1:$SLUICE_PORT/v1/buckets" | jq -er .bucket_id)
    for ((i = 0; i < OBJECTS; i += 100)); do
        jq -cn --argjson start "$i" '{objects: [range($start; $start + 100) | {
            title: "object \(.)",
            blobs: [{property: "content", type: "text",
                     data: "Object \(.) is a short English note about rivers, bridges and the weather in spring. It is written to be processed."}]}]}' \
            >"$BENCH_TMP/objects.json"
        curl --silent --show-error --fail-with-body -X POST \
            -H "Authorization: Bearer $BENCH_KEY" -H "X-Namespace: $name" \
            -H 'Content-Type: application/json' --data-binary "@$BENCH_TMP/objects.json" \
            "http://127.0.0.1:$SLUICE_PORT/v1/buckets/$bucket/objects/batch" \
            | jq -r '.succeeded[].object_id' >>"$BENCH_TMP/$name.ids"
    done
    printf '%s\n' "$bucket"
}

# Processes every object of the namespace's bucket once; prints the seconds from submit to
# the terminal status.
run_batch() {
    local name=$1 bucket=$2 batch status started ended
    local base="http://127.0.0.1:$SLUICE_PORT/v1/buckets/$bucket/batches"
    local auth=(-H "Authorization: Bearer $BENCH_KEY" -H "X-Namespace: $name"
        -H 'Content-Type: application/json')
    jq -Rn '{object_ids: [inputs], dedup_strategy: "force"}' <"$BENCH_TMP/$name.ids" \
        >"$BENCH_TMP/batch.json"
    batch=$(curl --silent --show-error --fail-with-body -X POST "${auth[@]}" \
        --data-binary "@$BENCH_TMP/batch.json" "$base" | jq -er .batch_id)
    started=$(date +%s.%N)
    curl --silent --show-error --fail-with-body -X POST "${auth[@]}" --data-binary '{}' \
        "$base/$batch/submit" >/dev/null
    while :; do
        status=$(curl --silent --show-error --fail-with-body "${auth[@]}" "$base/$batch" \
            | jq -r .status)
        case $status in
            COMPLETED) break ;;
            COMPLETED_WITH_ERRORS | FAILED | CANCELED) die "batch $batch ended $status" ;;
        esac
        sleep 0.05
    done
    ended=$(date +%s.%N)
    awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.3f\n", b - a }'
}

# The store's floor: as many document rows of the same shape, GROUP to a transaction.
floor_seconds() {
    local started ended
    sql "$DATABASE_NAME" -c 'SET client_min_messages = warning' \
        -c 'CREATE TABLE IF NOT EXISTS floor_documents (LIKE documents INCLUDING ALL)' \
        >/dev/null
    awk -v n="$OBJECTS" -v g="$GROUP" 'BEGIN {
        for (i = 0; i < n; i += g) {
            print "BEGIN;"
            printf "INSERT INTO floor_documents (id, org_id, namespace_id, collection_id, bucket_id, object_id, batch_id, doc) VALUES "
            for (j = i; j < i + g && j < n; j++) {
                if (j > i) printf ", "
                printf "(\047doc_%d_%s\047, \047org\047, \047ns\047, \047col\047, \047bkt\047, \047obj_%d\047, \047btch\047, \047{\"text\": \"Object %d is a short English note about rivers, bridges and the weather in spring.\", \"language\": \"en\", \"chunk_index\": 0}\047)", j, run, j, j
            }
            print ";"
            print "COMMIT;"
        }
    }' run="$RANDOM" >"$BENCH_TMP/floor.sql"
    started=$(date +%s.%N)
    sql "$DATABASE_NAME" -f "$BENCH_TMP/floor.sql" >/dev/null
    ended=$(date +%s.%N)
    sql "$DATABASE_NAME" -c 'TRUNCATE floor_documents' >/dev/null
    awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.3f\n", b - a }'
}

log "creating $OBJECTS objects in each of two namespaces"
TEXT_BUCKET=$(setup_namespace bench_text text_extractor)
PASS_BUCKET=$(setup_namespace bench_pass passthrough_extractor)

TEXT=()
PASS=()
FLOOR=()
for ((r = 1; r <= REPEATS; r++)); do
    log "run $r of $REPEATS"
    TEXT+=("$(run_batch bench_text "$TEXT_BUCKET")")
    PASS+=("$(run_batch bench_pass "$PASS_BUCKET")")
    FLOOR+=("$(floor_seconds)")
done

text_s=$(median "${TEXT[@]}")
pass_s=$(median "${PASS[@]}")
floor_s=$(median "${FLOOR[@]}")
text_rate=$(awk -v n="$OBJECTS" -v s="$text_s" 'BEGIN { printf "%.0f\n", n / s }')
pass_rate=$(awk -v n="$OBJECTS" -v s="$pass_s" 'BEGIN { printf "%.0f\n", n / s }')
floor_rate=$(awk -v n="$OBJECTS" -v s="$floor_s" 'BEGIN { printf "%.0f\n", n / s }')
overhead_ms=$(awk -v n="$OBJECTS" -v s="$pass_s" 'BEGIN { printf "%.3f\n", s * 1000 / n }')

print_machine
printf 'objects per batch: %s; runs: %s; medians reported\n' "$OBJECTS" "$REPEATS"
printf 'text_extractor:        %6s objects/s  (%s s; runs: %s)\n' "$text_rate" "$text_s" "${TEXT[*]}"
printf 'passthrough_extractor: %6s objects/s  (%s s; runs: %s)\n' "$pass_rate" "$pass_s" "${PASS[*]}"
printf 'baseline, PostgreSQL inserting the documents alone: %s rows/s (%s s; runs: %s)\n' \
    "$floor_rate" "$floor_s" "${FLOOR[*]}"
printf 'ratio to the baseline: text_extractor %s, passthrough %s\n' \
    "$(ratio "$text_rate" "$floor_rate")" "$(ratio "$pass_rate" "$floor_rate")"
printf 'text_extractor >= %s objects/s: %s\n' "$TARGET_TEXT_RATE" \
    "$(verdict "$text_rate" '>=' "$TARGET_TEXT_RATE")"
printf 'engine overhead per object (passthrough): %s ms; < %s ms: %s\n' "$overhead_ms" \
    "$TARGET_OVERHEAD_MS" "$(verdict "$overhead_ms" '<' "$TARGET_OVERHEAD_MS")"
