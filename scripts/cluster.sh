#!/usr/bin/env bash
# Start a 3-node Tusk cluster on loopback (`make cluster`): node N runs with
# configs/cluster-nodeN.yaml, keeps its data in ./tusk-cluster/nodeN and logs
# to ./tusk-cluster/nodeN.log. Prints each node's Kafka address once all
# three serve; Ctrl-C or SIGTERM stops all three (SIGTERM, graceful). If one
# node exits by itself, the others are stopped too.
# Env: BIN=path to the tusk binary (default bin/tusk, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/tusk}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/tusk
mkdir -p tusk-cluster

pids=()
stopping=0
stop_all() {
  [ "$stopping" = 1 ] && return
  stopping=1
  echo "stopping tusk cluster..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  rc=0
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || rc=$?; done
  return "$rc"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

for i in 1 2 3; do
  rm -f "tusk-cluster/node$i.ready.json"
  # Ctrl-C also reaches the nodes (same process group); tusk treats
  # SIGINT like SIGTERM, a graceful stop.
  "$BIN" serve --config "configs/cluster-node$i.yaml" \
    --ready-file "tusk-cluster/node$i.ready.json" >"tusk-cluster/node$i.log" 2>&1 &
  pids+=("$!")
done

# The ready file is written once a node serves Kafka.
for i in 1 2 3; do
  pid=${pids[$((i - 1))]}
  for _ in $(seq 1 300); do
    [ -s "tusk-cluster/node$i.ready.json" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "node $i exited during start; tail of tusk-cluster/node$i.log:" >&2
      tail -n 20 "tusk-cluster/node$i.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  if [ ! -s "tusk-cluster/node$i.ready.json" ]; then
    echo "node $i not ready after 30 s; see tusk-cluster/node$i.log" >&2
    exit 1
  fi
done

addrs=()
for i in 1 2 3; do
  f="tusk-cluster/node$i.ready.json"
  kafka=$(sed -E 's/.*"kafka":"([^"]+)".*/\1/' "$f")
  internal=$(sed -nE 's/.*"internal":"([^"]+)".*/\1/p' "$f")
  addrs+=("$kafka")
  echo "node $i: kafka $kafka  internal ${internal:-?}  data tusk-cluster/node$i  log tusk-cluster/node$i.log"
done
bootstrap=$(IFS=,; echo "${addrs[*]}")
echo "bootstrap servers: $bootstrap"
echo "status: $BIN cluster status --server 127.0.0.1:9194    (Ctrl-C stops the cluster)"

# Run until interrupted, or until any node exits on its own.
set +e
wait -n "${pids[@]}"
rc=$?
echo "a tusk node exited (status $rc); stopping the others" >&2
exit 1
