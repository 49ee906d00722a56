#!/usr/bin/env bash
# One large upload through sluice's own signed URL: a 1 GiB file is PUT with curl (streamed
# from disk, `curl -T`) to the presigned URL of `POST …/uploads`, on the embedded default
# (SQLite metadata, blobs as local files), then confirmed. The baseline is dd copying the same
# file to the same filesystem in the same run, so the ratio says what sluice's HTTP path, its
# hashing and its multipart file writes cost against a bare copy.
#
# Durability is compared like with like. sluice flushes the stored file (and its directory)
# before it answers the PUT; dd without `conv=fdatasync` exits before its data is on disk. Each
# side is therefore timed through an fdatasync of the file it wrote (`sync -d FILE`, the call
# `conv=fdatasync` makes before dd exits), which for sluice's file finds nothing left to do. Two
# rates come out of each run: up to the writer's answer, and up to the end of the flush
# (durable); the target applies to the durable one. The source file is generated once
# (`dd conv=fdatasync` from /dev/urandom) and read once before the runs, so
# both sides read it from the page cache in every run.
#
# The page cache that the writes fill is prepared the same way for both sides too. On this kind
# of virtual machine, memory freed for more than about 2 s is handed back to the host (free page
# reporting), and filling page cache with such pages runs several times slower than refilling
# pages freed a moment ago: a 1 GiB dd measured 300-570 MB/s against 3 GB/s. Which pages a write
# gets then depends on what ran before it, so before every timed write the script deletes the
# previous write's file, waits 3 s for pending reports to finish, writes and deletes an untimed
# 1 GiB file (flushed), and starts the timed write at once: both sides refill pages freed a
# moment earlier, as a server whose page cache is full and recycled would.
#
# Also samples sluice's resident memory just before each PUT and its peak during it, and checks
# every run: a 200 answer with an ETag, a confirmation that completes with the right size, an
# object whose blob reports that size, and stored bytes equal to the source (cmp, untimed).
#
# Usage: bench/upload_large.sh    (BENCH_REPEATS=3, BENCH_UPLOAD_MIB=1024 by default)
# Targets: durable rate >= 0.8 of dd's; RSS growth during the upload < 32 MiB, measured from the
# RSS before the first PUT to the peak during each PUT (memory one upload keeps and the next one
# uses again counts as growth), in the largest run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly TARGET_RATIO=0.8
readonly TARGET_GROWTH_KB=$((32 * 1024))
readonly CONTENT_TYPE=application/octet-stream
MIB=${BENCH_UPLOAD_MIB:-1024}
SIZE=$((MIB * 1024 * 1024))
REPEATS=$(repeats)
# One PUT of 1 GiB must not take longer than this; a slower run fails rather than hangs.
readonly PUT_TIMEOUT_S=600

bench_init upload_large
ensure_commands curl jq
build_sluice

now_us() {
    local t=${EPOCHREALTIME//[.,]/}
    printf '%s\n' "$((10#$t))"
}

# MB/s (10^6 bytes a second) for SIZE bytes in MICROSECONDS.
rate_mb_s() {
    awk -v b="$SIZE" -v us="$1" 'BEGIN { if (us <= 0) print "n/a"; else printf "%.1f", b / us }'
}

mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }

# Busy cores of the machine and of sluice between two samples taken by cpu_sample.
cpu_sample() { printf '%s %s\n' "$(proc_ticks "$SLUICE_PID")" "$(machine_ticks)"; }
cpu_between() {
    awk -v a="$1" -v b="$2" -v cpus="$(nproc)" 'BEGIN {
        split(a, x, " "); split(b, y, " "); total = y[3] - x[3]
        if (total <= 0) { print "n/a n/a"; exit }
        k = cpus / total
        printf "%.2f %.2f\n", (y[2] - x[2]) * k, (y[1] - x[1]) * k }'
}

# Space for the source and three copies, with 1 GiB to spare.
needed=$((4 * SIZE + (1 << 30)))
available=$(df --output=avail -B1 "$BENCH_TMP" | tail -n 1)
((available > needed)) \
    || die "needs $((needed >> 20)) MiB free under $BENCH_TMP; $((available >> 20)) MiB are"

source_file=$BENCH_TMP/source.bin
data_dir=$BENCH_TMP/data
log "writing the ${MIB} MiB source file (random bytes, conv=fdatasync)"
dd if=/dev/urandom of="$source_file" bs=1M count="$MIB" conv=fdatasync status=none
cat "$source_file" >/dev/null
PREVIOUS_OUTPUT=

# Gets the page cache ready for a timed write; see the header.
prepare_write() {
    local warm=$BENCH_TMP/warm.bin
    [[ -z $PREVIOUS_OUTPUT ]] || rm -f "$PREVIOUS_OUTPUT"
    sleep 3
    dd if="$source_file" of="$warm" bs=1M conv=fdatasync status=none
    rm -f "$warm"
    sync -f "$BENCH_TMP"
}

start_sluice "$data_dir"
api POST /v1/namespaces '{"namespace_name":"bench"}' >/dev/null
bucket_id=$(api POST /v1/buckets '{"bucket_name":"large",
    "bucket_schema":{"properties":{"file":{"type":"pdf"}}}}' | jq -er .bucket_id)

# One timed upload through sluice, checked end to end. Sets PUT_US (to the 200 answer),
# DURABLE_US (to the end of the fdatasync), RSS_BEFORE_KB, RSS_PEAK_KB, PUT_CORES and
# PUT_SLUICE_CORES.
sluice_run() {
    local run=$1 upload url upload_id key stored code etag t0 t1 t2 c0 c1 confirm object size
    upload=$(api POST "/v1/buckets/$bucket_id/uploads" "$(jq -cn --arg name "large-$run.bin" \
        --arg type "$CONTENT_TYPE" --argjson size "$SIZE" \
        '{filename: $name, content_type: $type, file_size_bytes: $size, blob_property: "file"}')")
    url=$(jq -er .presigned_url <<<"$upload")
    upload_id=$(jq -er .upload_id <<<"$upload")
    key=$(jq -er .s3_key <<<"$upload")
    [[ $url == "http://127.0.0.1:$SLUICE_PORT/v1/files/"* ]] \
        || die "the presigned URL is not sluice's own signed URL: ${url%%\?*}"
    stored=$data_dir/blobs/$key

    prepare_write
    RSS_BEFORE_KB=$(rss_kb "$SLUICE_PID")
    start_rss_sampler "$SLUICE_PID" "$BENCH_TMP/rss.peak"
    c0=$(cpu_sample)
    t0=$(now_us)
    # `Expect:` switches off curl's 100-continue handshake, which the SDK clients do not use.
    code=$(curl --silent --show-error --max-time "$PUT_TIMEOUT_S" -T "$source_file" \
        -H "Content-Type: $CONTENT_TYPE" -H 'Expect:' -D "$BENCH_TMP/put.headers" \
        -o "$BENCH_TMP/put.body" -w '%{http_code}' "$url") || die "the PUT failed"
    t1=$(now_us)
    c1=$(cpu_sample)
    stop_rss_sampler
    [[ -f $stored ]] || die "the PUT answered $code but there is no file at the upload's key"
    sync -d "$stored"
    t2=$(now_us)
    RSS_PEAK_KB=$(cat "$BENCH_TMP/rss.peak")
    ((RSS_PEAK_KB >= RSS_BEFORE_KB)) || RSS_PEAK_KB=$RSS_BEFORE_KB
    read -r PUT_CORES PUT_SLUICE_CORES < <(cpu_between "$c0" "$c1")

    [[ $code == 200 ]] || die "the PUT answered $code: $(head -c 300 "$BENCH_TMP/put.body")"
    etag=$(awk -F': ' 'tolower($1) == "etag" { sub(/\r$/, "", $2); print $2 }' \
        "$BENCH_TMP/put.headers")
    [[ -n $etag ]] || die "the PUT answered without an ETag"
    confirm=$(api POST "/v1/buckets/$bucket_id/uploads/$upload_id/confirm" \
        "$(jq -cn --arg etag "$etag" --argjson n "$SIZE" '{etag: $etag, file_size_bytes: $n}')")
    [[ $(jq -r .status <<<"$confirm") == COMPLETED ]] || die "the confirmation answered $confirm"
    [[ $(jq -r .file_size_bytes <<<"$confirm") == "$SIZE" ]] \
        || die "the confirmation reports $(jq -r .file_size_bytes <<<"$confirm") bytes, not $SIZE"
    object=$(api GET "/v1/buckets/$bucket_id/objects/$(jq -er .object_id <<<"$confirm")")
    size=$(jq -r '.blobs[0].details.size_bytes' <<<"$object")
    [[ $size == "$SIZE" ]] || die "the object's blob reports $size bytes, not $SIZE"
    cmp --silent "$source_file" "$stored" || die "the stored bytes differ from the source"
    # Checked; the next write deletes it (the data directory is this run's own).
    PREVIOUS_OUTPUT=$stored
    PUT_US=$((t1 - t0))
    DURABLE_US=$((t2 - t0))
}

# One timed copy by dd, the same bytes to the same filesystem, flushed the same way. Sets
# PUT_US, DURABLE_US and PUT_CORES.
dd_run() {
    local target=$BENCH_TMP/dd.out t0 t1 t2 c0 c1
    prepare_write
    c0=$(cpu_sample)
    t0=$(now_us)
    dd if="$source_file" of="$target" bs=1M status=none
    t1=$(now_us)
    c1=$(cpu_sample)
    sync -d "$target"
    t2=$(now_us)
    read -r PUT_CORES _ < <(cpu_between "$c0" "$c1")
    cmp --silent "$source_file" "$target" || die "dd's copy differs from the source"
    PREVIOUS_OUTPUT=$target
    PUT_US=$((t1 - t0))
    DURABLE_US=$((t2 - t0))
}

idle_rss_kb=$(rss_kb "$SLUICE_PID")
sluice_cached=() sluice_durable=() dd_cached=() dd_durable=()
rss_before=() rss_peak=() rss_growth=() sluice_cores=() machine_cores=() dd_cores=()
# sluice and dd alternate, so that a noisy neighbour hurts both alike.
for ((run = 1; run <= REPEATS; run++)); do
    sluice_run "$run"
    sluice_cached+=("$(rate_mb_s "$PUT_US")")
    sluice_durable+=("$(rate_mb_s "$DURABLE_US")")
    rss_before+=("$RSS_BEFORE_KB")
    rss_peak+=("$RSS_PEAK_KB")
    # Measured from the RSS before the first PUT: memory kept after one upload and used again
    # by the next still counts as growth.
    rss_growth+=("$((RSS_PEAK_KB - rss_before[0]))")
    sluice_cores+=("$PUT_SLUICE_CORES")
    machine_cores+=("$PUT_CORES")
    log "run $run: sluice ${sluice_cached[-1]} MB/s to the answer," \
        "${sluice_durable[-1]} MB/s flushed; RSS $(mib "$RSS_BEFORE_KB") -> peak" \
        "$(mib "$RSS_PEAK_KB") MiB; sluice $PUT_SLUICE_CORES of $PUT_CORES busy cores"

    dd_run
    dd_cached+=("$(rate_mb_s "$PUT_US")")
    dd_durable+=("$(rate_mb_s "$DURABLE_US")")
    dd_cores+=("$PUT_CORES")
    log "run $run: dd ${dd_cached[-1]} MB/s to its exit, ${dd_durable[-1]} MB/s flushed;" \
        "$PUT_CORES busy cores"
done

cached_median=$(median "${sluice_cached[@]}")
durable_median=$(median "${sluice_durable[@]}")
dd_cached_median=$(median "${dd_cached[@]}")
dd_durable_median=$(median "${dd_durable[@]}")
durable_ratio=$(ratio "$durable_median" "$dd_durable_median")
growth_max=$(printf '%s\n' "${rss_growth[@]}" | sort -n | tail -n 1)

echo
echo "== ${MIB} MiB upload through sluice's signed URL (local files, SQLite) vs dd," \
    "same filesystem, $REPEATS runs =="
print_machine
echo "MB/s are 10^6 bytes a second; the source is read from the page cache by both sides"
printf '%-46s %10s   %s\n' figure median runs
printf '%-46s %10s   %s\n' "sluice PUT + fdatasync of the file (MB/s)" "$durable_median" \
    "${sluice_durable[*]}"
printf '%-46s %10s   %s\n' "baseline: dd + fdatasync (MB/s)" "$dd_durable_median" \
    "${dd_durable[*]}"
printf '%-46s %10s   target >= %s: %s\n' "ratio sluice / dd, durable" "$durable_ratio" \
    "$TARGET_RATIO" "$(verdict "$durable_ratio" '>=' "$TARGET_RATIO")"
printf '%-46s %10s   %s\n' "sluice PUT to its 200 answer (MB/s)" "$cached_median" \
    "${sluice_cached[*]}"
printf '%-46s %10s   %s\n' "baseline: dd to its exit, no flush (MB/s)" "$dd_cached_median" \
    "${dd_cached[*]}"
printf '%-46s %10s\n' "ratio sluice / dd, page cache" \
    "$(ratio "$cached_median" "$dd_cached_median")"
printf '%-46s %10s\n' "RSS idle after start (MiB)" "$(mib "$idle_rss_kb")"
printf '%-46s %10s   %s\n' "RSS just before the PUT (MiB)" "$(mib "$(median "${rss_before[@]}")")" \
    "$(for k in "${rss_before[@]}"; do printf '%s ' "$(mib "$k")"; done)"
printf '%-46s %10s   %s\n' "RSS peak during the PUT (MiB)" "$(mib "$(median "${rss_peak[@]}")")" \
    "$(for k in "${rss_peak[@]}"; do printf '%s ' "$(mib "$k")"; done)"
# A memory bound holds for every run, so the largest growth is the figure.
printf '%-46s %10s   %s; target < %s MiB: %s\n' "RSS growth, largest run (MiB)" \
    "$(mib "$growth_max")" \
    "$(for k in "${rss_growth[@]}"; do printf '%s ' "$(mib "$k")"; done)" \
    "$((TARGET_GROWTH_KB / 1024))" "$(verdict "$growth_max" '<' "$TARGET_GROWTH_KB")"
printf '%-46s %10s   %s\n' "sluice CPU during the PUT (cores)" "$(median "${sluice_cores[@]}")" \
    "${sluice_cores[*]}"
printf '%-46s %10s   %s\n' "machine busy during the PUT (cores)" \
    "$(median "${machine_cores[@]}")" "${machine_cores[*]}"
printf '%-46s %10s   %s\n' "machine busy during dd (cores)" "$(median "${dd_cores[@]}")" \
    "${dd_cores[*]}"
echo "every run: 200 with an ETag, confirmed COMPLETED with $SIZE bytes, the object's blob" \
    "reports $SIZE bytes, stored bytes equal to the source"
