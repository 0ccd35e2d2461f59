#!/usr/bin/env bash
# bench/rolls.sh: what segment rolls cost acks=all producers. A local
# 3-node cluster (storage.fsync=always) holds one partition at replication
# factor 3 whose active segment rolls every SEG bytes; each roll hands the
# leadership to another node (docs/architecture.md, "Rotation and
# failover"). One producer writes RATE MB/s of 1 KiB records, acks=all,
# for SECS seconds; it prints one JSON line per run: produce MB/s and
# latency p50/p99/p99.9 in ms, the rolls the nodes logged, and the
# longest Produce request any node served (the server's share of a roll's
# stall; the rest is the client's queue behind it). Results are not
# written anywhere: docs/io-and-scale.md ("Scale") quotes them.
#
# Env: TUSK=path      tusk binary (default: built from this tree)
#      RATE=5         MB/s offered
#      SEG=1048576    segment.bytes (1 MiB: a roll every 0.2 s at 5 MB/s)
#      SECS=10        seconds each run lasts
#      RUNS=3         runs (each on a new cluster)
set -euo pipefail
: "${RATE:=5}" "${SEG:=1048576}" "${SECS:=10}" "${RUNS:=3}"
for t in go jq curl; do command -v "$t" >/dev/null || { echo "rolls.sh: $t not found" >&2; exit 1; }; done
repo=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/section.sh
. "$repo/bench/section.sh"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
if [ -z "${TUSK:-}" ]; then (cd "$repo" && go build -o "$work/tusk" ./cmd/tusk); TUSK=$work/tusk; fi

# longest_produce HTTP: the upper bound of the highest non-empty bucket of
# the node's Produce request durations, in ms.
longest_produce() {
  curl -sf "http://$1/metrics" | awk -F'[{}" ]+' '/^tusk_request_duration_seconds_bucket\{api="Produce"/ {
    le = $0; sub(/.*le="/, "", le); sub(/".*/, "", le); n = $NF
    if (n > prev) top = le; prev = n } END { if (top == "") print "-"; else print top * 1000 }'
}

for run in $(seq 1 "$RUNS"); do
  dir=$work/run$run
  base=$(( 20000 + RANDOM % 20000 ))
  port() { echo $(( base + 10 * $1 + $2 )); }
  voters="1=127.0.0.1:$(port 1 3),2=127.0.0.1:$(port 2 3),3=127.0.0.1:$(port 3 3)"
  pids=()
  for n in 1 2 3; do
    mkdir -p "$dir/n$n"
    "$TUSK" serve --node-id "$n" --data-dir "$dir/n$n/data" --kafka-listen "127.0.0.1:$(port "$n" 2)" \
      --http-listen "127.0.0.1:$(port "$n" 5)" --raft-listen "127.0.0.1:$(port "$n" 3)" \
      --internal-listen "127.0.0.1:$(port "$n" 4)" --voters "$voters" --ready-file "$dir/n$n/ready.json" \
      --storage-fsync always --log-level info >"$dir/n$n/server.log" 2>&1 &
    pids+=($!)
  done
  for n in 1 2 3; do
    for _ in $(seq 1 3000); do [ -s "$dir/n$n/ready.json" ] && break; sleep 0.01; done
    [ -s "$dir/n$n/ready.json" ] || { echo "rolls.sh: node $n did not start" >&2; tail -20 "$dir/n$n/server.log" >&2; exit 1; }
  done
  wait_alive "$TUSK" "127.0.0.1:$(port 1 4)" 3 || { echo "rolls.sh: no three live brokers" >&2; exit 1; }
  "$TUSK" topic create --brokers "127.0.0.1:$(port 1 2)" -p 1 -r 3 -c "segment.bytes=$SEG" rolls >/dev/null
  r=$("$TUSK" bench --brokers "127.0.0.1:$(port 1 2)" --json --topic rolls --producers 1 --record-size 1024 --acks all \
    --rate "$RATE" --records $(( RATE * 1024 * SECS )) --consume=false 2>>"$dir/bench.log")
  rolls=$(cat "$dir"/n*/server.log | grep -c 'segment rolled' || true)
  longest=$(for n in 1 2 3; do longest_produce "127.0.0.1:$(port "$n" 5)"; done | sort -g | tail -1)
  jq -c --argjson rolls "$rolls" --arg longest "$longest" \
    '{run: '"$run"', mbps: (.ProduceMBps * 100 | round / 100), p50_ms: (.P50 / 1e4 | round / 100), p99_ms: (.P99 / 1e4 | round / 100),
      p999_ms: (.P999 / 1e4 | round / 100), errors: .Errors, rolls: $rolls, longest_produce_ms_at_most: $longest}' <<<"$r"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=()
  rm -rf "$dir"
done
