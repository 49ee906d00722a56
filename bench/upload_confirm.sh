#!/usr/bin/env bash
# Upload confirmation on PostgreSQL: 1,000 uploads of small files are created and their bytes
# PUT to sluice's own signed URLs (untimed), then all 1,000 are confirmed
# (`POST …/uploads/{id}/confirm` with the ETag and size) by 32 requests in flight. Reports
# confirmations per second and their p50 and p99 latency. The baseline is the same number of
# single-object creates (`POST …/objects` with a small inline text blob) at the same
# concurrency on the same server in the same run, so the ratio says what a confirmation costs
# next to the plainest write that also creates one object.
#
# The load client is a small Python program (standard library only, a minimal HTTP/1.1 client
# on sockets, to keep its CPU use low): one thread and one keep-alive connection per request in
# flight. Every answer is checked: each confirmation must
# answer COMPLETED with the uploaded size and an object id, each create an object id, and the
# bucket must hold one object per answered request at the end. Confirms and creates alternate
# in order from run to run.
#
# Usage: bench/upload_confirm.sh    (BENCH_REPEATS=3, BENCH_UPLOADS=1000, BENCH_CONCURRENCY=32,
#                                    BENCH_FILE_BYTES=1024 by default)
# No target is set for this one; the ratio is reported for comparison from run to run.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

UPLOADS=${BENCH_UPLOADS:-1000}
CONCURRENCY=${BENCH_CONCURRENCY:-32}
FILE_BYTES=${BENCH_FILE_BYTES:-1024}
REPEATS=$(repeats)
readonly WARMUP_UPLOADS=200
# No phase of a run may take longer than this; a slower one fails rather than hangs.
readonly PHASE_TIMEOUT_S=300

bench_init upload_confirm
ensure_commands curl jq psql createdb dropdb python3
build_sluice
ensure_postgres

create_database
start_sluice "$BENCH_TMP/data" "$DATABASE_URL_NEW"
api POST /v1/namespaces '{"namespace_name":"bench"}' >/dev/null
bucket_id=$(api POST /v1/buckets '{"bucket_name":"uploads","bucket_schema":{"properties":{
    "file":{"type":"pdf"},"notes":{"type":"text"}}}}' | jq -er .bucket_id)

cat >"$BENCH_TMP/client.py" <<'PY'
"""Load client: prepare uploads, confirm them, or create objects, N requests, C in flight.

Prints one JSON line: requests, seconds, rate, p50_ms, p99_ms and, over the timed part, the
busy cores of sluice, of PostgreSQL (this run's database and the shared background processes),
of this client and of the rest of the machine, and the idle cores.
"""
import json
import os
import socket
import sys
import threading
import time

PORT, KEY, BUCKET, MODE = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
COUNT, CONCURRENCY, FILE_BYTES = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
LIST_FILE, SLUICE_PID, DATABASE = sys.argv[8], int(sys.argv[9]), sys.argv[10]
HEADERS = {"Authorization": f"Bearer {KEY}", "X-Namespace": "bench",
           "Content-Type": "application/json"}
BASE = f"/v1/buckets/{BUCKET}"
TICK = os.sysconf("SC_CLK_TCK")


def proc_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError):
        return 0


def postgres_ticks():
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            if "(postgres) " not in stat:
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                title = f.read().decode(errors="replace")
        except OSError:
            continue
        client_backend = "127.0.0.1(" in title or "[local]" in title
        if client_backend and f" {DATABASE} " not in title:
            continue
        fields = stat.rsplit(") ", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def machine_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7]
    return busy, busy + v[3] + v[4]


def cpu_sample():
    t = os.times()
    return (proc_ticks(SLUICE_PID), postgres_ticks(), (t.user + t.system) * TICK,
            machine_ticks())


class Connection:
    """One keep-alive HTTP/1.1 connection to sluice. Deliberately minimal, so that the client
    takes as little of the machine's CPU as it can: requests are written as bytes, and answers
    are read by Content-Length (sluice sends it on every answer this client asks for)."""

    def __init__(self):
        self.sock = socket.create_connection(("127.0.0.1", int(PORT)), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def request(self, method, path, body=None, headers=HEADERS):
        body = body or b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{PORT}",
                 f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.receive()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        answer = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            answer[name.strip().lower()] = value.strip()
        if "content-length" not in answer:
            fail(f"an answer without Content-Length: {head[:300]!r}")
        length = int(answer["content-length"])
        while len(self.buffer) < length:
            self.buffer += self.receive()
        data, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split(" ", 2)[1]), answer.get("etag"), data

    def receive(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            fail("sluice closed the connection")
        return chunk

    def close(self):
        self.sock.close()


def request(conn, method, path, body, headers=HEADERS):
    return conn.request(method, path, body.encode() if isinstance(body, str) else body, headers)


def fail(message):
    print(f"client: {message}", file=sys.stderr, flush=True)
    os._exit(1)


def prepare_one(conn, i, payload):
    body = json.dumps({"filename": f"small-{i}.bin", "content_type": "application/octet-stream",
                       "file_size_bytes": FILE_BYTES, "blob_property": "file"})
    status, _, data = request(conn, "POST", f"{BASE}/uploads", body)
    if status != 200:
        fail(f"creating an upload answered {status}: {data[:300]!r}")
    upload = json.loads(data)
    url = upload["presigned_url"]
    prefix = f"http://127.0.0.1:{PORT}/v1/files/"
    if not url.startswith(prefix):
        fail(f"the presigned URL is not sluice's own: {url.split('?')[0]}")
    status, etag, data = request(conn, "PUT", url[len(prefix) - len("/v1/files/"):], payload,
                                 {"Content-Type": "application/octet-stream"})
    if status != 200 or not etag:
        fail(f"the PUT answered {status} (ETag {etag!r}): {data[:300]!r}")
    return f"{upload['upload_id']} {etag}"


def confirm_one(conn, line):
    upload_id, etag = line.split(" ", 1)
    body = json.dumps({"etag": etag, "file_size_bytes": FILE_BYTES})
    status, _, data = request(conn, "POST", f"{BASE}/uploads/{upload_id}/confirm", body)
    if status != 200:
        fail(f"confirming {upload_id} answered {status}: {data[:300]!r}")
    answer = json.loads(data)
    if (answer.get("status") != "COMPLETED" or answer.get("file_size_bytes") != FILE_BYTES
            or not answer.get("object_id")):
        fail(f"confirming {upload_id} answered {data[:300]!r}")


CREATE_BODY = json.dumps({"blobs": [{"property": "notes", "type": "text",
                                     "data": "a small text blob for the benchmark"}]})


def create_one(conn, _):
    status, _, data = request(conn, "POST", f"{BASE}/objects", CREATE_BODY)
    if status != 200 or not json.loads(data).get("object_id"):
        fail(f"creating an object answered {status}: {data[:300]!r}")


def main():
    if MODE == "prepare":
        payload = os.urandom(FILE_BYTES)
        items = list(range(COUNT))
        work = lambda conn, i: prepare_one(conn, i, payload)
    elif MODE == "confirm":
        with open(LIST_FILE) as f:
            items = [line.strip() for line in f if line.strip()]
        if len(items) != COUNT:
            fail(f"expected {COUNT} prepared uploads, found {len(items)}")
        work = confirm_one
    elif MODE == "create":
        items = list(range(COUNT))
        work = create_one
    else:
        fail(f"unknown mode {MODE}")

    results = [None] * len(items)
    latencies = [0.0] * len(items)
    next_item = iter(range(len(items)))
    lock = threading.Lock()
    # The connections are opened and used once before the clock starts.
    ready = threading.Barrier(CONCURRENCY + 1)

    def worker():
        conn = Connection()
        status, _, _ = request(conn, "GET", "/v1/health", None)
        if status != 200:
            fail(f"health check answered {status}")
        ready.wait()
        while True:
            with lock:
                i = next(next_item, None)
            if i is None:
                break
            t0 = time.perf_counter()
            results[i] = work(conn, items[i])
            latencies[i] = time.perf_counter() - t0
        conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(CONCURRENCY)]
    for t in threads:
        t.start()
    ready.wait()
    c0, t0 = cpu_sample(), time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    c1 = cpu_sample()

    if MODE == "prepare":
        with open(LIST_FILE, "w") as f:
            f.writelines(line + "\n" for line in results)
    ordered = sorted(latencies)
    percentile = lambda p: ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000
    cores = lambda a, b: (b - a) / TICK / elapsed
    machine_busy = (c1[3][0] - c0[3][0]) / (c1[3][1] - c0[3][1]) * os.cpu_count()
    parts = [cores(c0[i], c1[i]) for i in range(3)]
    print(json.dumps({
        "requests": len(items), "seconds": round(elapsed, 4),
        "rate": round(len(items) / elapsed, 1),
        "p50_ms": round(percentile(50), 2), "p99_ms": round(percentile(99), 2),
        "sluice": round(parts[0], 2), "postgres": round(parts[1], 2),
        "client": round(parts[2], 2), "rest": round(max(machine_busy - sum(parts), 0), 2),
        "idle": round(os.cpu_count() - machine_busy, 2),
    }))


main()
PY

# Runs one phase of the client; prints its JSON line. Usage: client MODE COUNT LIST_FILE
client() {
    timeout "$PHASE_TIMEOUT_S" python3 "$BENCH_TMP/client.py" "$SLUICE_PORT" "$BENCH_KEY" \
        "$bucket_id" "$1" "$2" "$CONCURRENCY" "$FILE_BYTES" "$3" "$SLUICE_PID" "$DATABASE_NAME" \
        || die "the $1 phase failed"
}

# One CPU split as text, from a client JSON line.
cpu_text() {
    jq -r '"sluice \(.sluice), postgres \(.postgres), client \(.client), rest \(.rest),"
        + " idle \(.idle) cores"' <<<"$1"
}

answered=0
log "warming up ($WARMUP_UPLOADS uploads, confirms and creates)"
client prepare "$WARMUP_UPLOADS" "$BENCH_TMP/warmup.list" >/dev/null
client confirm "$WARMUP_UPLOADS" "$BENCH_TMP/warmup.list" >/dev/null
client create "$WARMUP_UPLOADS" - >/dev/null
answered=$((answered + 2 * WARMUP_UPLOADS))

confirm_rates=() create_rates=() confirm_p50=() confirm_p99=() create_p50=() create_p99=()
prepare_rates=() confirm_sluice_us=() create_sluice_us=() confirm_pg_us=() create_pg_us=()
for ((run = 1; run <= REPEATS; run++)); do
    prepared=$(client prepare "$UPLOADS" "$BENCH_TMP/run$run.list")
    prepare_rates+=("$(jq -r .rate <<<"$prepared")")
    log "run $run: $UPLOADS uploads created and PUT at $(jq -r .rate <<<"$prepared")/s"
    # Confirms first in odd runs, creates first in even ones.
    for phase in $( ((run % 2)) && echo confirm create || echo create confirm); do
        line=$(client "$phase" "$UPLOADS" "$BENCH_TMP/run$run.list")
        answered=$((answered + UPLOADS))
        rate=$(jq -r .rate <<<"$line")
        sluice_us=$(cpu_us_per_op "$(jq -r .sluice <<<"$line")" "$rate")
        pg_us=$(cpu_us_per_op "$(jq -r .postgres <<<"$line")" "$rate")
        if [[ $phase == confirm ]]; then
            confirm_rates+=("$rate")
            confirm_p50+=("$(jq -r .p50_ms <<<"$line")")
            confirm_p99+=("$(jq -r .p99_ms <<<"$line")")
            confirm_sluice_us+=("$sluice_us")
            confirm_pg_us+=("$pg_us")
            confirm_cpu=$(cpu_text "$line")
        else
            create_rates+=("$rate")
            create_p50+=("$(jq -r .p50_ms <<<"$line")")
            create_p99+=("$(jq -r .p99_ms <<<"$line")")
            create_sluice_us+=("$sluice_us")
            create_pg_us+=("$pg_us")
            create_cpu=$(cpu_text "$line")
        fi
        log "run $run: $phase $rate/s (p50 $(jq -r .p50_ms <<<"$line") ms," \
            "p99 $(jq -r .p99_ms <<<"$line") ms; CPU $(cpu_text "$line"))"
    done
done

# Every answered confirm and create must be an object of the bucket.
count=$(api GET "/v1/buckets/$bucket_id" | jq -er .object_count)
((count == answered)) || die "the bucket holds $count objects for $answered answered requests"
completed=$(sql "$DATABASE_NAME" -c "SELECT count(*) FROM uploads WHERE status = 'COMPLETED'")
expected_uploads=$((WARMUP_UPLOADS + REPEATS * UPLOADS))
((completed == expected_uploads)) \
    || die "$completed uploads are COMPLETED; $expected_uploads were confirmed"

confirm_median=$(median "${confirm_rates[@]}")
create_median=$(median "${create_rates[@]}")

echo
echo "== upload confirmation vs single-object create, PostgreSQL, $UPLOADS requests," \
    "$CONCURRENCY in flight, $REPEATS runs =="
print_machine
printf '%-40s %10s   %s\n' figure median runs
printf '%-40s %10s   %s\n' "confirms/s" "$confirm_median" "${confirm_rates[*]}"
printf '%-40s %10s   %s\n' "baseline: creates/s (inline text blob)" "$create_median" \
    "${create_rates[*]}"
printf '%-40s %10s\n' "ratio confirms / creates" "$(ratio "$confirm_median" "$create_median")"
printf '%-40s %10s   %s\n' "confirm latency p50 (ms)" "$(median "${confirm_p50[@]}")" \
    "${confirm_p50[*]}"
printf '%-40s %10s   %s\n' "confirm latency p99 (ms)" "$(median "${confirm_p99[@]}")" \
    "${confirm_p99[*]}"
printf '%-40s %10s   %s\n' "create latency p50 (ms)" "$(median "${create_p50[@]}")" \
    "${create_p50[*]}"
printf '%-40s %10s   %s\n' "create latency p99 (ms)" "$(median "${create_p99[@]}")" \
    "${create_p99[*]}"
printf '%-40s %10s   %s\n' "sluice CPU per confirm (us)" "$(median "${confirm_sluice_us[@]}")" \
    "${confirm_sluice_us[*]}"
printf '%-40s %10s   %s\n' "sluice CPU per create (us)" "$(median "${create_sluice_us[@]}")" \
    "${create_sluice_us[*]}"
printf '%-40s %10s   %s\n' "postgres CPU per confirm (us)" "$(median "${confirm_pg_us[@]}")" \
    "${confirm_pg_us[*]}"
printf '%-40s %10s   %s\n' "postgres CPU per create (us)" "$(median "${create_pg_us[@]}")" \
    "${create_pg_us[*]}"
printf '%-40s %10s   %s\n' "untimed: uploads created and PUT/s" "$(median "${prepare_rates[@]}")" \
    "${prepare_rates[*]}"
echo "CPU split of the last confirm run: $confirm_cpu"
echo "CPU split of the last create run:  $create_cpu"
printf 'objects in the bucket: %s for %s answered confirms and creates; %s uploads COMPLETED\n' \
    "$count" "$answered" "$completed"
