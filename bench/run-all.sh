#!/usr/bin/env bash
# Runs every benchmark in turn with one release build: startup, single create, batch create,
# upload confirmation and the large upload.
# Each script prints its own table of medians and ratios; this adds nothing but the order.
#
# Usage: bench/run-all.sh 2>bench.log | tee bench.txt    (settings as in bench/README.md)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init run-all
build_sluice
export SLUICE_BIN

status=0
for script in startup single_create batch_create upload_confirm upload_large batch_process \
    job_claim; do
    log "running bench/$script.sh"
    "$BENCH_REPO/bench/$script.sh" || {
        log "bench/$script.sh failed"
        status=1
    }
done
exit "$status"
