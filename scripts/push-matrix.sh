#!/usr/bin/env bash
# Put -> push delivery, the matrix issue 4 asks for: 1 KiB records under `sync`, 1 and 16
# shards x 1 and 8 push consumers. For each cell, a fresh riffled; the closed-loop maximum
# (50 producers x window 1, every consumer subscribed to every shard, each consumer on its own
# connection); then open loops at 50 % and 90 % of that maximum (50 producers x window 4).
# Prints one row per cell and load: records/s offered and produced, put -> delivery p50 /
# p99 / p99.9 (every record at every consumer), put acknowledgement p99.
#
#   bash scripts/push-matrix.sh [ROUNDS=1] [SECONDS_PER_RUN=5]
#
# Then the 1,000 records/s row alone, each round followed by `riffle-bench floor` (see
# bench/README.md). Bounded: 15 runs of SECONDS_PER_RUN + 1 s warm-up per round (the floor
# counts two). Servers bind to 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-1}
SECS=${2:-5}
cargo build --release --locked -q -p riffle-server -p riffle-bench
BIN=target/release
WORK=$(mktemp -d)
PID=
cleanup() {
    if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# field FILE EXPR: a value from a riffle-bench result (python3 expression over `d`).
field() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$1"; }

start_riffled() {
    rm -rf "$WORK/data"
    "$BIN/riffled" --data-dir "$WORK/data" --listen 127.0.0.1:0 --kinesis-listen off \
        --no-limits --log-level warn >"$WORK/riffled.out" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do
        ADDR=$(sed -n 's/^riffled listening on \([^ ]*\).*/\1/p' "$WORK/riffled.out")
        [ -n "$ADDR" ] && return 0
        sleep 0.05
    done
    echo "riffled did not start:"; cat "$WORK/riffled.out"; exit 1
}

stop_riffled() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }

printf '%5s %6s %9s %5s %9s %9s %9s %9s %9s %9s\n' round shards consumers load \
    offered/s produced/s p50_ms p99_ms p99.9_ms ack_p99
for round in $(seq 1 "$ROUNDS"); do
    for shards in 1 16; do
        for consumers in 1 8; do
            start_riffled
            common=(--target server --endpoint "$ADDR" --workload push --connections 50
                --producers 50 --shards "$shards" --consumers "$consumers"
                --duration "$SECS" --warmup 1 --quiet)
            "$BIN/riffle-bench" run "${common[@]}" --window 1 --out "$WORK/max" >/dev/null
            max=$(field "$WORK/max.json" 'round(d["produce_records_per_sec"])')
            row() {
                printf '%5s %6s %9s %5s %9s %9s %9s %9s %9s %9s\n' "$round" "$shards" \
                    "$consumers" "$1" "$2" \
                    "$(field "$3" 'round(d["produce_records_per_sec"])')" \
                    "$(field "$3" 'round(d["e2e_latency"]["p50_ms"], 2)')" \
                    "$(field "$3" 'round(d["e2e_latency"]["p99_ms"], 2)')" \
                    "$(field "$3" 'round(d["e2e_latency"]["p999_ms"], 2)')" \
                    "$(field "$3" 'round(d["put_latency"]["p99_ms"], 2)')"
            }
            row max "-" "$WORK/max.json"
            for pct in 50 90; do
                rate=$((max * pct / 100))
                "$BIN/riffle-bench" run "${common[@]}" --window 4 --rate "$rate" \
                    --out "$WORK/open" >/dev/null
                row "$pct%" "$rate" "$WORK/open.json"
            done
            stop_riffled
        done
    done
done

# The 1,000 records/s target (1 shard, 1 consumer, 4 producers x window 8), each run
# followed by `riffle-bench floor` at the same rate in the same directory: the machine's
# own durable round trip and put -> push path with nothing of Riffle in it, so that the
# p99 can be read against what the disk and the scheduler did in the same minute.
echo
printf '%5s %22s %9s %9s %9s %28s %9s %9s\n' round "put->push at 1000/s:" p50_ms p99_ms \
    p99.9_ms "floor durable delivery:" p50_ms p99_ms
for round in $(seq 1 "$ROUNDS"); do
    start_riffled
    "$BIN/riffle-bench" run --target server --endpoint "$ADDR" --workload push --rate 1000 \
        --producers 4 --window 8 --shards 1 --consumers 1 --duration "$SECS" --warmup 1 \
        --quiet --out "$WORK/k" >/dev/null
    stop_riffled
    "$BIN/riffle-bench" floor --rate 1000 --duration "$SECS" --warmup 1 --dir "$WORK" \
        --out "$WORK/floor" >/dev/null
    printf '%5s %22s %9s %9s %9s %28s %9s %9s\n' "$round" "" \
        "$(field "$WORK/k.json" 'round(d["e2e_latency"]["p50_ms"], 2)')" \
        "$(field "$WORK/k.json" 'round(d["e2e_latency"]["p99_ms"], 2)')" \
        "$(field "$WORK/k.json" 'round(d["e2e_latency"]["p999_ms"], 2)')" "" \
        "$(field "$WORK/floor.json" 'round(d["durable_delivery"]["p50_ms"], 2)')" \
        "$(field "$WORK/floor.json" 'round(d["durable_delivery"]["p99_ms"], 2)')"
done
