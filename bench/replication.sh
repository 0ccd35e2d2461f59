#!/usr/bin/env bash
# bench/replication.sh: what replication costs at a fixed offered load
# (issue 16, "Replication"). The three nodes of a local cluster share this
# machine's cores, so unbounded throughput says little; instead both setups
# take the same acks=all load, RATE MB/s of 1 KiB records from PRODUCERS
# clients into 6 partitions, storage.fsync=always:
#   single: one node, replication factor 1;
#   3 nodes: replication factor 3 (every record on all three).
# Each setup runs RUNS times; the table shows the median run's p50/p99
# produce latency and the nodes' summed CPU-seconds per GiB produced
# (/proc/PID/stat). Targets: CPU per GiB ≤ 2× the single node's, p99
# ≤ 2× the single node's. It writes a "Replication" section into OUT
# (bench/RESULTS.md), replacing the previous one. Run alone, or from
# bench/compare.sh (SECTIONS=replication bench/compare.sh runs only this).
#
# Env: TUSK=path        tusk binary (default: built from this tree)
#      RATE=100         MB/s offered
#      SECS=10          seconds each run lasts
#      RUNS=3           runs per setup (the median is reported)
#      PRODUCERS=4      producer clients
#      LINGER=0s        the producers' linger (kgo's own default is 10ms;
#                       0 sends each record as soon as no request is in
#                       flight, so batches are small and requests many)
#      DROP_BEHIND=0    storage.drop-behind of every node (bytes; 0: off, the
#                       default): with it the nodes' appends reuse page-cache
#                       pages freed a moment ago instead of new ones, which on
#                       a VM with free page reporting the host faults in
#                       (docs/io-and-scale.md, "Produce write path")
#      EXTRA_FLAGS=     more tusk serve flags for every node, e.g.
#                       "--storage-commit-sync fdatasync"
#      BASE_PORT=       first of the cluster's loopback ports (default random)
#      DATA_ROOT=dir    where the data dirs go (default: a temp dir)
#      OUT=bench/RESULTS.md ("-": print the section only)
#      PROFILE=dir      during each setup's first run, save every node's CPU
#                       profile (/debug/pprof/profile) and its /metrics before
#                       and after into dir (single-*, nN-*), and the server logs
# Needs: go, jq (and curl with PROFILE).
set -eEuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/section.sh
. bench/section.sh
repo=$(pwd)
: "${RATE:=100}" "${SECS:=10}" "${RUNS:=3}" "${PRODUCERS:=4}" "${OUT:=bench/RESULTS.md}" "${LINGER:=0s}" "${DROP_BEHIND:=0}"
: "${BASE_PORT:=$(( 20000 + RANDOM % 20000 ))}"
for t in go jq; do command -v "$t" >/dev/null || { echo "replication.sh: $t not found" >&2; exit 1; }; done
work=$(mktemp -d)
DATA_ROOT=${DATA_ROOT:-$(mktemp -d)}
dir=$DATA_ROOT/replication
declare -A pids
declare -A https # node -> HTTP address (PROFILE)
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  if [ -n "${PROFILE:-}" ]; then for n in 0 1 2 3; do cp "$dir/n$n/server.log" "$PROFILE/n$n-server.log" 2>/dev/null || true; done; fi
  rm -rf "$work" "$dir"
}
trap cleanup EXIT
trap 'echo "replication: failed at line $LINENO; last log lines:" >&2; tail -n 15 "$dir"/n*/server.log "$dir/bench.log" >&2 2>/dev/null || true' ERR
began=$(date +%s)
log() { echo "replication: $(( $(date +%s) - began ))s $*" >&2; }
cmds=()
note() { cmds+=("$*"); }

log "building"
if [ -z "${TUSK:-}" ]; then go build -o "$work/tusk" ./cmd/tusk; TUSK=$work/tusk; fi
hz=$(getconf CLK_TCK)
records=$(( RATE * 1024 * SECS ))
flags=(--storage-fsync always --log-level warn)
[ "$DROP_BEHIND" = 0 ] || flags+=(--storage-drop-behind "$DROP_BEHIND")
# shellcheck disable=SC2206 # EXTRA_FLAGS is split on purpose
[ -z "${EXTRA_FLAGS:-}" ] || flags+=($EXTRA_FLAGS)

# cpu_ticks PID...: summed user+system CPU ticks of the processes.
cpu_ticks() {
  local sum=0 p
  for p in "$@"; do sum=$(( sum + $(awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$p/stat") )); done
  echo "$sum"
}
wait_ready() {
  for _ in $(seq 1 3000); do [ -s "$1" ] && return 0; kill -0 "$2" 2>/dev/null || break; sleep 0.01; done
  echo "replication: a node did not start" >&2; tail -20 "$(dirname "$1")/server.log" >&2; exit 1
}
# profile_start LABEL: with PROFILE set, start fetching every node's CPU
# profile for the run (SECS) and save its metrics.
profpids=()
profile_start() {
  [ -n "${PROFILE:-}" ] || return 0
  mkdir -p "$PROFILE"
  local n
  for n in "${!https[@]}"; do
    curl -sf "http://${https[$n]}/metrics" >"$PROFILE/$1-n$n-metrics.before" || true
    curl -sf -o "$PROFILE/$1-n$n.pprof" "http://${https[$n]}/debug/pprof/profile?seconds=$SECS" &
    profpids+=($!)
  done
}
profile_end() {
  [ -n "${PROFILE:-}" ] || return 0
  local n p
  for n in "${!https[@]}"; do curl -sf "http://${https[$n]}/metrics" >"$PROFILE/$1-n$n-metrics.after" || true; done
  for p in "${profpids[@]}"; do wait "$p" || true; done
  profpids=()
}
# run ADDR TOPIC: one measured run; prints "p50_ns p99_ns cpu_s_per_gib mbps".
run() {
  local addr=$1 topic=$2 c0 c1 r
  c0=$(cpu_ticks "${pids[@]}")
  r=$("$TUSK" bench --brokers "$addr" --json --topic "$topic" --partitions 6 --record-size 1024 --producers "$PRODUCERS" \
    --records "$records" --acks all --rate "$RATE" --linger "$LINGER" --consume=false 2>>"$dir/bench.log")
  c1=$(cpu_ticks "${pids[@]}")
  echo "$(echo "$r" | jq -r .P50) $(echo "$r" | jq -r .P99) $(awk -v a="$c0" -v b="$c1" -v hz="$hz" -v n="$(echo "$r" | jq -r .Produced)" 'BEGIN { printf "%.3f", (b-a)/hz/(n*1024/1073741824) }') $(echo "$r" | jq -r '.ProduceMBps | . * 10 | round / 10')"
}
# median_of LINES: the line whose p99 (field 2) is the median.
median_of() { sort -n -k2 | awk '{ l[NR] = $0 } END { print l[int((NR+1)/2)] }'; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.2f ms", ns/1e6 }'; }
# drained BASE_MB: waits (at most 90 s) until the data under $dir is back
# within 64 MiB of BASE_MB, i.e. the deleter (storage.delete-rate) has freed
# a deleted run's segments. Runs kept on disk would fill the page cache, and
# on this VM pages beyond the ~8 GB its host keeps backed cost several times
# more CPU, which made a setup's later runs slower for reasons outside the
# broker (docs/io-and-scale.md, "Measuring it").
drained() {
  for _ in $(seq 1 450); do
    [ "$(du -sm "$dir" | cut -f1)" -le $(( $1 + 64 )) ] && return 0
    sleep 0.2
  done
  log "a deleted run's data was not freed within 90 s"
}
measure() { # ADDR LABEL: warm-up, then RUNS runs on fresh topics
  local addr=$1 label=$2 out=() i
  "$TUSK" bench --brokers "$addr" --json --topic warm --partitions 6 --record-size 1024 --producers "$PRODUCERS" \
    --records $(( RATE * 1024 * 2 )) --acks all --rate "$RATE" --linger "$LINGER" --consume=false >/dev/null 2>>"$dir/bench.log"
  note "$label: tusk bench --brokers ADDR --json --topic rN --partitions 6 --record-size 1024 --producers $PRODUCERS --records $records --acks all --rate $RATE --linger $LINGER --consume=false   (× $RUNS after a 2 s warm-up)"
  for i in $(seq 1 "$RUNS"); do
    base=$(du -sm "$dir" | cut -f1)
    [ "$i" = 1 ] && profile_start "${label// /}"
    out+=("$(run "$addr" "r$i")")
    [ "$i" = 1 ] && profile_end "${label// /}"
    log "$label run $i: ${out[-1]}"
    # Each run's data is deleted before the next run (see drained).
    "$TUSK" topic delete --brokers "$addr" "r$i" >/dev/null 2>>"$dir/bench.log"
    drained "$base"
  done
  printf '%s\n' "${out[@]}" | median_of
}

rm -rf "$dir"; mkdir -p "$dir/n0"
log "single node"
note "single: tusk serve --data-dir DIR --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ready-file DIR/ready.json ${flags[*]}"
"$TUSK" serve --data-dir "$dir/n0/data" --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ready-file "$dir/n0/ready.json" \
  "${flags[@]}" >"$dir/n0/server.log" 2>&1 &
pids[0]=$!
wait_ready "$dir/n0/ready.json" "${pids[0]}"
https[0]=$(jq -r .http "$dir/n0/ready.json")
single=$(measure "$(jq -r .kafka "$dir/n0/ready.json")" single)
kill -TERM "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true; unset 'pids[0]'
sync; rm -rf "$dir/n0/data"

log "three nodes, replication factor 3"
port() { echo $(( BASE_PORT + 10 * $1 + $2 )); }
voters="1=127.0.0.1:$(port 1 3),2=127.0.0.1:$(port 2 3),3=127.0.0.1:$(port 3 3)"
note "3 nodes: tusk serve --node-id N --data-dir DIR/nN --kafka-listen 127.0.0.1:P --raft-listen ... --internal-listen ... --voters $voters ${flags[*]}"
for n in 1 2 3; do
  mkdir -p "$dir/n$n"
  "$TUSK" serve --node-id "$n" --data-dir "$dir/n$n/data" --kafka-listen "127.0.0.1:$(port "$n" 2)" \
    --http-listen "127.0.0.1:$(port "$n" 5)" --raft-listen "127.0.0.1:$(port "$n" 3)" \
    --internal-listen "127.0.0.1:$(port "$n" 4)" --voters "$voters" --ready-file "$dir/n$n/ready.json" \
    "${flags[@]}" >"$dir/n$n/server.log" 2>&1 &
  pids[$n]=$!
done
unset 'https[0]'
for n in 1 2 3; do wait_ready "$dir/n$n/ready.json" "${pids[$n]}"; https[$n]=127.0.0.1:$(port "$n" 5); done
# The default replication factor is min(3, live brokers): wait for three.
wait_alive "$TUSK" "127.0.0.1:$(port 1 4)" 3 || { echo "replication: no three live brokers" >&2; exit 1; }
cluster=$(measure "127.0.0.1:$(port 1 2)" "3 nodes")

read -r s50 s99 scpu smb <<<"$single"
read -r c50 c99 ccpu cmb <<<"$cluster"
cpu_ratio=$(awk -v a="$scpu" -v b="$ccpu" 'BEGIN { printf "%.2f", b/a }')
p99_ratio=$(awk -v a="$s99" -v b="$c99" 'BEGIN { printf "%.2f", b/a }')
verdict() { awk -v r="$1" 'BEGIN { if (r <= 2) print "met"; else print "**missed**" }'; }
load=$(cut -d' ' -f1-3 /proc/loadavg)
total=$(( $(date +%s) - began ))
log "done in ${total}s"
section=$(
  echo "<!-- replication begin -->"
  echo "## Replication at a fixed offered load"
  echo
  echo "Written by \`bench/replication.sh\` on $(date -u +%Y-%m-%dT%H:%MZ) in ${total} s (commit $(git -C "$repo" rev-parse --short HEAD)$(tree_dirty "$repo" && echo ', dirty'); load average at the end $load). acks=all at $RATE MB/s offered for ${SECS} s, 6 partitions, $PRODUCERS producers (linger $LINGER), 1 KiB records, \`storage.fsync=always\`; the median (by p99) of $RUNS runs, each on a new topic, deleted and its data freed before the next run. All nodes share this machine's cores, so CPU-s/GB is summed over the nodes."
  echo
  echo "| setup | produced | p50 / p99 | CPU-s/GB (all nodes) | target | verdict |"
  echo "|---|---|---|---|---|---|"
  echo "| single node, RF=1 | $smb MB/s | $(ms "$s50") / $(ms "$s99") | $scpu | reference | - |"
  echo "| 3 nodes, RF=3 | $cmb MB/s | $(ms "$c50") / $(ms "$c99") | $ccpu | CPU ≤ 2× single (${cpu_ratio}×) | $(verdict "$cpu_ratio") |"
  echo "| 3 nodes, RF=3: p99 | | | | p99 ≤ 2× single (${p99_ratio}×) | $(verdict "$p99_ratio") |"
  echo
  echo '```'
  printf '%s\n' "${cmds[@]}"
  echo '```'
  echo "<!-- replication end -->"
)
write_section replication "$section" "$OUT"
