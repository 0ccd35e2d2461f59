#!/usr/bin/env bash
# bench/tls.sh: what TLS on a client listener costs (issue 14). One node
# with a PLAINTEXT and an SSL listener (a throwaway CA from `tusk certs`);
# `tusk bench` produces RECORDS 1 KiB records (acks=all, 6 partitions,
# PRODUCERS idempotent producers) and consumes them back, alternately over
# the plaintext and the SSL listener of the same process, RUNS times each.
# The table shows the median of each figure over the runs, the
# broker's CPU-seconds (/proc/PID/stat, user+system) per GB produced, the
# consumption of the same bytes included. It writes a "TLS" section into
# OUT (bench/RESULTS.md), replacing the previous one.
#
# Env: TUSK=path        tusk binary (default: built from this tree)
#      RECORDS=200000   records per run
#      RUNS=3           runs per listener (alternating)
#      PRODUCERS=4      producer clients
#      DATA_ROOT=dir    where the data dir goes (default: a temp dir)
#      OUT=bench/RESULTS.md ("-": print the section only)
# Needs: go, jq.
set -eEuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/section.sh
. bench/section.sh
repo=$(pwd)
: "${RECORDS:=200000}" "${RUNS:=3}" "${PRODUCERS:=4}" "${OUT:=bench/RESULTS.md}"
for t in go jq; do command -v "$t" >/dev/null || { echo "tls.sh: $t not found" >&2; exit 1; }; done
work=$(mktemp -d)
DATA_ROOT=${DATA_ROOT:-$(mktemp -d)}
dir=$DATA_ROOT/tls-bench
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work" "$dir"
}
trap cleanup EXIT
trap 'echo "tls: failed at line $LINENO; last log lines:" >&2; tail -n 15 "$dir/server.log" "$dir/bench.log" >&2 2>/dev/null || true' ERR
began=$(date +%s)
log() { echo "tls: $(( $(date +%s) - began ))s $*" >&2; }
load0=$(cut -d' ' -f1-3 /proc/loadavg)

log "building"
if [ -z "${TUSK:-}" ]; then go build -o "$work/tusk" ./cmd/tusk; TUSK=$work/tusk; fi
hz=$(getconf CLK_TCK)
rm -rf "$dir"; mkdir -p "$dir"
"$TUSK" certs --dir "$dir/certs" --nodes 1 --ips 127.0.0.1 >/dev/null
serve=(serve --data-dir "$dir/data" --kafka-listeners PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0 --http-listen 127.0.0.1:0
  --tls-cert-file "$dir/certs/node1.crt" --tls-key-file "$dir/certs/node1.key" --ready-file "$dir/ready.json" --log-level warn)
"$TUSK" "${serve[@]}" >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 3000); do [ -s "$dir/ready.json" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
[ -s "$dir/ready.json" ] || { echo "tls: the node did not start" >&2; tail -20 "$dir/server.log" >&2; exit 1; }
plain=$(jq -r .listeners.PLAINTEXT "$dir/ready.json")
ssl=$(jq -r .listeners.SSL "$dir/ready.json")

cpu_ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$1/stat"; }
bench_args=(bench --json --partitions 6 --record-size 1024 --producers "$PRODUCERS" --records "$RECORDS" --acks all --consume)
# run MODE TOPIC: one measured run; prints "produce_MBps consume_MBps cpu_s cpu_s_per_gb p99_ms".
run() {
  local mode=$1 topic=$2 c0 c1 r extra=()
  if [ "$mode" = tls ]; then extra=(--brokers "$ssl" --tls-ca "$dir/certs/ca.crt"); else extra=(--brokers "$plain"); fi
  c0=$(cpu_ticks "$pid")
  r=$("$TUSK" "${bench_args[@]}" "${extra[@]}" --topic "$topic" 2>>"$dir/bench.log")
  c1=$(cpu_ticks "$pid")
  jq -r --arg c0 "$c0" --arg c1 "$c1" --arg hz "$hz" \
    '((($c1|tonumber) - ($c0|tonumber)) / ($hz|tonumber)) as $cpu
     | "\(.ProduceMBps*10|round/10) \(.ConsumeMBps*10|round/10) \($cpu*100|round/100) \($cpu / (.Produced*1024/1e9) *100|round/100) \(.P99/1e4|round/100)"' <<<"$r"
}
log "warm-up"
run plain warm-plain >/dev/null
run tls warm-tls >/dev/null
declare -a P T
for i in $(seq 1 "$RUNS"); do
  P+=("$(run plain "plain-$i")"); log "plaintext run $i: ${P[-1]}"
  T+=("$(run tls "tls-$i")"); log "TLS run $i: ${T[-1]}"
done
# medians LINES: the median of each column on its own.
medians() {
  local lines cols i out=()
  lines=$(cat)
  cols=$(head -1 <<<"$lines" | wc -w)
  for i in $(seq 1 "$cols"); do
    out+=("$(cut -d' ' -f"$i" <<<"$lines" | sort -g | awk '{ l[NR] = $0 } END { print l[int((NR+1)/2)] }')")
  done
  echo "${out[*]}"
}
read -r pp pc pcpu pgb p99p <<<"$(printf '%s\n' "${P[@]}" | medians)"
read -r tp tc tcpu tgb p99t <<<"$(printf '%s\n' "${T[@]}" | medians)"
ratio=$(awk -v a="$pgb" -v b="$tgb" 'BEGIN { printf "%.2f", b/a }')
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
load1=$(cut -d' ' -f1-3 /proc/loadavg)
total=$(( $(date +%s) - began ))
log "done in ${total}s"
section=$(
  echo "<!-- tls begin -->"
  echo "## TLS on a client listener"
  echo
  echo "Written by \`bench/tls.sh\` on $(date -u +%Y-%m-%dT%H:%MZ) in ${total} s (commit $(git -C "$repo" rev-parse --short HEAD)$(tree_dirty "$repo" && echo ', dirty'); load average $load0 at the start, $load1 at the end, from other work on this 2-core machine: throughput is noisy, the CPU per GB less so). One node with a PLAINTEXT and an SSL listener (TLS 1.3, ECDSA P-256 certificate from \`tusk certs\`), \`storage.fsync=always\`; each run produces $RECORDS 1 KiB records (acks=all, idempotent, $PRODUCERS producers, 6 partitions) and consumes them back, alternating the listeners; each figure is the median of its $RUNS runs, taken on its own. Broker CPU is user+system of the node's process over the run (producing and consuming the same bytes) per GB produced. Plaintext Fetch sends record bytes with sendfile; over TLS they are copied and encrypted. The runs offer as much load as the producers can (64 MB buffered per producer), so p99 is queueing, not the bare round trip."
  echo
  echo "| listener | produce MB/s | consume MB/s | produce p99 | broker CPU-s | broker CPU-s/GB |"
  echo "|---|---|---|---|---|---|"
  echo "| PLAINTEXT | $pp | $pc | $p99p ms | $pcpu | $pgb |"
  echo "| SSL | $tp | $tc | $p99t ms | $tcpu | $tgb (${ratio}×) |"
  echo
  echo "All runs (produce MB/s, consume MB/s, CPU-s, CPU-s/GB, p99 ms): plaintext $(printf '[%s] ' "${P[@]}"); TLS $(printf '[%s] ' "${T[@]}")."
  echo
  echo '```'
  echo "tusk certs --dir DIR/certs --nodes 1 --ips 127.0.0.1"
  echo "tusk ${serve[*]}" | sed "s#$dir#DIR#g"
  echo "tusk ${bench_args[*]} --brokers PLAINTEXT_ADDR --topic plain-N"
  echo "tusk ${bench_args[*]} --brokers SSL_ADDR --tls-ca DIR/certs/ca.crt --topic tls-N"
  echo "# or: bench/tls.sh (RECORDS=$RECORDS RUNS=$RUNS PRODUCERS=$PRODUCERS)"
  echo '```'
  echo "<!-- tls end -->"
)
write_section tls "$section" "$OUT"
