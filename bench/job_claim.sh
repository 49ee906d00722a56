#!/usr/bin/env bash
# Job claim throughput of the engine alone, on PostgreSQL: jobs are enqueued, then workers
# claim and finish them with the same two statements sluice's own workers use, until none is
# left (examples/job_claim.rs). Reported: jobs/s, the cores busy in the client and in
# PostgreSQL, and jobs/s per busy core, the figure that compares across machines.
#
# For reference, published unbatched figures of other PostgreSQL job queues on far larger
# machines: River about 46,000 jobs/s, graphile-worker about 15,000 jobs/s.
#
# Usage: bench/job_claim.sh    (BENCH_JOBS=20000 BENCH_WORKERS=8 BENCH_REPEATS=3 by default)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

readonly JOBS=${BENCH_JOBS:-20000}
readonly WORKERS=${BENCH_WORKERS:-8}
REPEATS=$(repeats)

bench_init job_claim
ensure_commands jq psql createdb dropdb
ensure_postgres
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sluice-target}"
log "building the benchmark client"
cargo build --release --quiet --example job_claim >&2 || die "cargo build failed"
CLIENT=$CARGO_TARGET_DIR/release/examples/job_claim

RATES=()
PER_CORE=()
for ((r = 1; r <= REPEATS; r++)); do
    create_database
    line=$("$CLIENT" "$DATABASE_URL_NEW" "$JOBS" "$WORKERS")
    log "run $r: $line"
    RATES+=("$(jq -r .jobs_per_second <<<"$line")")
    PER_CORE+=("$(jq -r .jobs_per_second_per_core <<<"$line")")
    drop_database "$DATABASE_NAME"
done

print_machine
printf 'client: release build of examples/job_claim.rs at commit %s\n' \
    "$(git rev-parse --short HEAD 2>/dev/null || echo ?)"
printf 'jobs per run: %s; workers: %s; runs: %s; medians reported\n' "$JOBS" "$WORKERS" "$REPEATS"
whole() { printf '%.0f ' "$@"; }
printf 'claims+finishes: %.0f jobs/s (runs: %s)\n' "$(median "${RATES[@]}")" "$(whole "${RATES[@]}")"
printf 'per busy core (client + PostgreSQL): %.0f jobs/s (runs: %s)\n' \
    "$(median "${PER_CORE[@]}")" "$(whole "${PER_CORE[@]}")"
printf 'published, unbatched, other machines: River about 46,000 jobs/s, graphile-worker about 15,000\n'
