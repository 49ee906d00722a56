#!/usr/bin/env bash
# A sync of many keys from moto (S3) into a bucket on the embedded default (SQLite, local
# files): BENCH_KEYS small files are seeded under a fresh bucket, then sluice's first run
# (every file copied) is timed, and re-runs with nothing changed are timed against a bare
# paginated ListObjectsV2 of the same prefix, run right before each re-run
# (examples/sync_bench.rs). sluice's resident memory is sampled during every re-run.
#
# Usage: bench/sync_large.sh    (BENCH_KEYS=100000 BENCH_REPEATS=3 by default)
# Targets: a re-run takes at most 1.2 times the bare listing, writes nothing, and sluice's
# memory stays flat (it never holds the listing whole).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly KEYS=${BENCH_KEYS:-100000}
REPEATS=$(repeats)

bench_init sync_large
ensure_commands curl jq
build_sluice
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
log "building the benchmark client"
cargo build --release --quiet --example sync_bench >&2 || die "cargo build failed"
CLIENT=$CARGO_TARGET_DIR/release/examples/sync_bench

log "starting moto (scripts/services.sh up; the emulators keep running afterwards)"
eval "$("$(dirname "${BASH_SOURCE[0]}")/../scripts/services.sh" up)"
[[ -n ${SLUICE_TEST_S3_ENDPOINT:-} ]] || die "moto did not start"

export SLUICE_ALLOW_PRIVATE_NETWORKS=127.0.0.0/8
start_sluice "$BENCH_TMP/data"
line=$("$CLIENT" "http://127.0.0.1:$SLUICE_PORT" "$BENCH_KEY" "$SLUICE_PID" \
    "$SLUICE_TEST_S3_ENDPOINT" "$KEYS" "$REPEATS")
log "result: $line"

print_machine
printf 'client: release build of examples/sync_bench.rs\n'
printf 'keys: %s; re-runs: %s; medians reported\n' "$KEYS" "$REPEATS"
med() { median $(jq -r ".$1[]" <<<"$line"); }
printf 'first run: %.0f files/s (%.1f s for %s files)\n' \
    "$(jq -r .first_run_files_per_second <<<"$line")" "$(jq -r .first_run_seconds <<<"$line")" "$KEYS"
printf 'bare ListObjectsV2 of the prefix: %.2f s (runs: %s)\n' "$(med listing_seconds)" \
    "$(jq -r '.listing_seconds | map(. * 100 | round / 100) | join(" ")' <<<"$line")"
printf 're-run, nothing changed: %.2f s (runs: %s)\n' "$(med rerun_seconds)" \
    "$(jq -r '.rerun_seconds | map(. * 100 | round / 100) | join(" ")' <<<"$line")"
ratio=$(jq -r .rerun_over_listing <<<"$line")
printf 'ratio re-run / listing: %.2f   target <= 1.2: %s\n' "$ratio" \
    "$(awk -v r="$ratio" 'BEGIN { print (r <= 1.2 ? "PASS" : "MISS") }')"
printf 'RSS growth during a re-run: %.1f MiB (runs: %s)\n' "$(med rss_growth_mib)" \
    "$(jq -r '.rss_growth_mib | map(. * 10 | round / 10) | join(" ")' <<<"$line")"
printf 'objects in the bucket: %s for %s keys\n' "$(jq -r .objects <<<"$line")" "$KEYS"
