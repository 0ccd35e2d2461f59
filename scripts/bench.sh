#!/usr/bin/env bash
# End-to-end benchmark: start a fresh tusk on loopback (OS-picked ports, a
# temporary data dir), run `tusk bench` against it, stop it.
# Usage: scripts/bench.sh [tusk bench flags...]   e.g. --records 500000 --acks 1
# Env: FSYNC=always|interval|never (default always).
#      SERVER_BIN=path  serve with another tusk binary (default $BIN), e.g.
#                       to compare builds with the same load generator.
#      CONSUME_AFTER=1  then read the topic back from the page cache with
#                       `tusk bench --consume-only` (TOPIC, default tusk-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/tusk}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/tusk
SERVER_BIN=${SERVER_BIN:-$BIN}
dir=$(mktemp -d)
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
"$SERVER_BIN" serve --data-dir "$dir/data" --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --ready-file "$dir/ready.json" --storage-fsync "${FSYNC:-always}" --log-level warn &
pid=$!
for _ in $(seq 1 100); do [ -s "$dir/ready.json" ] && break; sleep 0.1; done
[ -s "$dir/ready.json" ] || { echo "tusk did not become ready" >&2; exit 1; }
addr=$(sed -E 's/.*"kafka":"([^"]+)".*/\1/' "$dir/ready.json")
echo "tusk at $addr (storage.fsync=${FSYNC:-always}, server $SERVER_BIN)"
"$BIN" bench --brokers "$addr" "$@"
if [ "${CONSUME_AFTER:-0}" = 1 ]; then
  "$BIN" bench --brokers "$addr" --topic "${TOPIC:-tusk-bench}" --consume-only
fi
