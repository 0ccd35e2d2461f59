#!/usr/bin/env bash
# bench/bgio-learner.sh: row (c) of bench/bgio.sh. Three nodes on
# loopback (one disk), fsync=always. Topic old (1 partition on nodes 1
# and 2) holds OLD_MB MiB; topic lat (6 partitions, replication factor 1,
# on nodes 1 and 3) takes acks=all at RATE MB/s. Reference: lat's
# latency with the cluster quiet. Then node 2 is killed: old's active
# segment rolls without it and, after replica.restore, node 3 copies the
# whole partition as a learner (at storage.background-io-rate) while lat
# is measured again. Prints two Markdown table rows; appends the commands
# to $CMDS.
#
# Env: TUSK (required), TOPICCONFIG (required), OLD_MB, RATE, SECS,
#      PRODUCERS, EXTRA (more serve flags), CMDS, DATA_ROOT, BASE_PORT.
set -eEuo pipefail
: "${OLD_MB:=3072}" "${RATE:=20}" "${SECS:=30}" "${PRODUCERS:=4}" "${EXTRA:=}" "${CMDS:=/dev/null}"
: "${BASE_PORT:=$(( 20000 + RANDOM % 20000 ))}"
DATA_ROOT=${DATA_ROOT:-$(mktemp -d)}
dir=$DATA_ROOT/bgio-learner
rm -rf "$dir"; mkdir -p "$dir"
declare -A pids
bpid=""
cleanup() {
  for p in $bpid "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'echo "bgio-learner: failed at line $LINENO; last log lines:" >&2; tail -n 15 "$dir"/n*/server.log "$dir/bench.log" >&2 2>/dev/null || true' ERR
began=$(date +%s)
log() { echo "bgio-learner: $(( $(date +%s) - began ))s $*" >&2; }
note() { echo "$*" >>"$CMDS"; }
port() { echo $(( BASE_PORT + 10 * $1 + $2 )); }
voters="1=127.0.0.1:$(port 1 3),2=127.0.0.1:$(port 2 3),3=127.0.0.1:$(port 3 3)"
# shellcheck disable=SC2206
flags=(--storage-fsync always --replica-restore 1s --replica-lag-time-max 2s --log-level info $EXTRA)
note "3 nodes: tusk serve --node-id N --data-dir DIR/nN --kafka-listen 127.0.0.1:P --raft-listen ... --internal-listen ... --voters $voters ${flags[*]}"
startnode() {
  local n=$1
  mkdir -p "$dir/n$n"
  "$TUSK" serve --node-id "$n" --data-dir "$dir/n$n/data" --kafka-listen "127.0.0.1:$(port "$n" 2)" \
    --http-listen "127.0.0.1:$(port "$n" 5)" --raft-listen "127.0.0.1:$(port "$n" 3)" \
    --internal-listen "127.0.0.1:$(port "$n" 4)" --voters "$voters" --ready-file "$dir/n$n/ready.json" \
    "${flags[@]}" >"$dir/n$n/server.log" 2>&1 &
  pids[$n]=$!
}
for n in 1 2 3; do startnode "$n"; done
for n in 1 2 3; do
  for _ in $(seq 1 3000); do [ -s "$dir/n$n/ready.json" ] && break; kill -0 "${pids[$n]}" 2>/dev/null || break; sleep 0.01; done
  [ -s "$dir/n$n/ready.json" ] || { echo "bgio-learner: node $n did not start" >&2; tail -20 "$dir/n$n/server.log" >&2; exit 1; }
done
addr="127.0.0.1:$(port 1 2)"
metric() { curl -fsS "http://127.0.0.1:$(port "$1" 5)/metrics" | awk -v m="$2" '$1 == m { printf "%.0f\n", $2 }'; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.1f ms", ns/1e6 }'; }
j() { echo "$1" | jq -r "$2"; }
lat_row() { echo "p50 $(ms "$(j "$1" .P50)"), p99 $(ms "$(j "$1" .P99)"), p99.9 $(ms "$(j "$1" .P999)") ($(j "$1" '.ProduceMBps | . * 10 | round / 10') MB/s)"; }
records=$(( RATE * 1024 * SECS ))
latency() {
  note "tusk bench --brokers ADDR --json --topic lat --partitions 6 --record-size 1024 --producers $PRODUCERS --records $records --acks all --rate $RATE --consume=false"
  "$TUSK" bench --brokers "$addr" --json --topic lat --partitions 6 --record-size 1024 --producers "$PRODUCERS" \
    --records "$records" --acks all --rate "$RATE" --consume=false 2>>"$dir/bench.log"
}

# Wait until the cluster has three live brokers (topic creation places
# replicas on them).
for _ in $(seq 1 300); do
  if "$TOPICCONFIG" -brokers "$addr" -topic old -assign "1,2" -set segment.bytes=1073741824 2>>"$dir/bench.log"; then break; fi
  sleep 0.2
done
note "topicconfig -brokers ADDR -topic old -assign 1,2 -set segment.bytes=1073741824"
note "topicconfig -brokers ADDR -topic lat -assign '1;3;1;3;1;3'"
"$TOPICCONFIG" -brokers "$addr" -topic lat -assign "1;3;1;3;1;3"
log "filling old with $OLD_MB MiB (replicas 1, 2)"
note "tusk bench --brokers ADDR --json --topic old --partitions 1 --record-size 1024 --producers $PRODUCERS --records $(( OLD_MB * 1024 )) --acks all --consume=false"
"$TUSK" bench --brokers "$addr" --json --topic old --partitions 1 --record-size 1024 --producers "$PRODUCERS" \
  --records $(( OLD_MB * 1024 )) --acks all --consume=false >/dev/null 2>>"$dir/bench.log"
sync
# Warm up: producer ids, connections, first segments of lat.
"$TUSK" bench --brokers "$addr" --json --topic lat --partitions 6 --record-size 1024 --producers "$PRODUCERS" \
  --records $(( RATE * 1024 * 2 )) --acks all --rate "$RATE" --consume=false >/dev/null 2>>"$dir/bench.log"
note "(a 2 s warm-up run on lat, not recorded)"
log "(c0) cluster quiet"
ref=$(latency)
log "(c) kill node 2; node 3 copies old as a learner"
b0=$(metric 3 tusk_storage_background_io_bytes_total)
note "kill -9 node 2, then at once the latency run"
kill -KILL "${pids[2]}"; wait "${pids[2]}" 2>/dev/null || true; unset 'pids[2]'
t0=$(date +%s%N)
busy=$(latency)
t1=$(date +%s%N)
b1=$(metric 3 tusk_storage_background_io_bytes_total)
th=$(metric 3 tusk_storage_background_throttled_seconds_total)
copied=$(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.0f", (b-a)/1048576 }')
p99a=$(j "$ref" .P99); p99c=$(j "$busy" .P99)
ratio=$(awk -v a="$p99a" -v b="$p99c" 'BEGIN { printf "%.1f", b/a }')
verdict=$(awk -v a="$p99a" -v b="$p99c" -v c="$copied" 'BEGIN { if (c < 100) print "not measured (no copy ran)"; else if (b <= 2*a) print "met"; else print "**missed**" }')
log "done: node 3 copied $copied MiB during the run"
echo "| (c0) 3 nodes, quiet (reference for c): topic lat on nodes 1 and 3 | $(lat_row "$ref") | reference | - |"
echo "| (c) while node 3 copies the $OLD_MB MiB partition of old as a learner (node 2 killed) | $(lat_row "$busy"); node 3 copied $copied MiB in the $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b-a)/1e9 }') s run under the budget (throttled ${th:-0} s) | p99 ≤ 2× (c0): ${ratio}× | $verdict |"
