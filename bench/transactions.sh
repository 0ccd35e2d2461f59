#!/usr/bin/env bash
# bench/transactions.sh: transactional produce throughput beside plain
# idempotent produce (issue 13's benchmark; docs/transactions.md). One
# node with the default configuration (a fresh data dir), 1 KiB records,
# 6 partitions, PRODUCERS producer clients on the same machine, acks=all:
#   (i)    idempotent producers, no transactions;
#   (t1000) transactional producers committing every 1,000 records;
#   (t100)  transactional producers committing every 100 records;
#   (t1)    one producer, one partition, transactions of one record sent
#           one at a time (SMALL records): the cost of a transaction's
#           round trips (AddPartitionsToTxn, Produce, EndTxn) and of
#           beginning the next while the previous one's markers are
#           written (the client backs off on CONCURRENT_TRANSACTIONS).
# Each row is its own topic with RECORDS records (`tusk bench --json`,
# `--txn-records N`); REPEAT rounds of the three, on one server; rows give
# the median MB/s and every round's figure. The load average is recorded
# before and after: on this shared 2-core machine numbers taken with a load
# above 3 are noted as such.
# It writes a "Transactions" section into OUT (bench/RESULTS.md), replacing
# the previous one.
#
# Env: TUSK=path        tusk binary (default: built from this tree)
#      RECORDS=200000   records per row and round
#      PRODUCERS=4      producer clients
#      REPEAT=3         rounds
#      SMALL=300        transactions of row (t1) per round
#      EXTRA=""         more tusk serve flags
#      OUT=bench/RESULTS.md ("-": print the section only)
# Needs: go, jq.
set -eEuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/section.sh
. bench/section.sh
repo=$(pwd)
: "${RECORDS:=200000}" "${PRODUCERS:=4}" "${REPEAT:=3}" "${SMALL:=300}" "${EXTRA:=}" "${OUT:=bench/RESULTS.md}"
for t in go jq; do command -v "$t" >/dev/null || { echo "transactions.sh: $t not found" >&2; exit 1; }; done

work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "transactions: failed at line $LINENO; last log lines:" >&2; tail -n 20 "$work/server.log" "$work/bench.log" >&2 2>/dev/null || true' ERR
began=$(date +%s)
log() { echo "transactions: $(( $(date +%s) - began ))s $*" >&2; }
load0=$(cut -d' ' -f1-3 /proc/loadavg)

log "building"
if [ -z "${TUSK:-}" ]; then go build -o "$work/tusk" ./cmd/tusk; TUSK=$work/tusk; fi
cmds=()
note() { cmds+=("$*"); }

# shellcheck disable=SC2086
"$TUSK" serve --data-dir "$work/data" --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --ready-file "$work/ready.json" --log-level warn $EXTRA >"$work/server.log" 2>&1 &
pid=$!
note "tusk serve --data-dir DIR --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ready-file DIR/ready.json --log-level warn${EXTRA:+ $EXTRA}"
for _ in $(seq 100); do [ -s "$work/ready.json" ] && break; sleep 0.1; done
addr=$(jq -r .kafka "$work/ready.json")
log "server at $addr"

# args NAME TXN ROUND: the tusk bench arguments of one run.
args() {
  echo --brokers "$addr" --json --topic "$1-$3" --partitions 6 --record-size 1024 --producers "$PRODUCERS" \
    --records "$RECORDS" --acks all --idempotent --consume=false --txn-records "$2"
}
# run NAME TXN ROUND: one tusk bench run, its JSON result on stdout.
run() {
  # shellcheck disable=SC2046
  "$TUSK" bench $(args "$@") 2>>"$work/bench.log"
}
declare -A mbps commits p99s loads
rows=(i t1000 t100)
declare -A txn=([i]=0 [t1000]=1000 [t100]=100)
for r in "${rows[@]}"; do
  a=$(args "$r" "${txn[$r]}" 1)
  note "tusk bench ${a/$addr/ADDR}"
done
small_args() {
  echo --brokers "$addr" --json --topic "t1-$1" --partitions 1 --record-size 1024 --producers 1 \
    --records "$SMALL" --acks all --idempotent --consume=false --sequential --txn-records 1
}
a=$(small_args 1)
note "tusk bench ${a/$addr/ADDR}"
t1=()
for round in $(seq "$REPEAT"); do
  for r in "${rows[@]}"; do
    l=$(cut -d' ' -f1 /proc/loadavg)
    res=$(run "$r" "${txn[$r]}" "$round")
    mbps[$r]+="$(echo "$res" | jq '.ProduceMBps * 10 | round / 10') "
    p99s[$r]+="$(echo "$res" | jq '.P99 / 1e6 | . * 10 | round / 10') "
    commits[$r]+="$(echo "$res" | jq -r '"\(.Transactions) \(.CommitP50 / 1e6 | . * 10 | round / 10) \(.CommitP99 / 1e6 | . * 10 | round / 10)"'),"
    loads[$r]+="$l "
    log "round $round $r: $(echo "$res" | jq -c '{ProduceMBps, Transactions, CommitP50, CommitP99, Errors}') (load $l)"
  done
  l=$(cut -d' ' -f1 /proc/loadavg)
  # shellcheck disable=SC2046
  res=$("$TUSK" bench $(small_args "$round") 2>>"$work/bench.log")
  t1+=("$(echo "$res" | jq -r --arg l "$l" '"\(.ProduceRecordsPerSec | . * 10 | round / 10) \(.P50 / 1e6 | . * 100 | round / 100) \(.CommitP50 / 1e6 | . * 100 | round / 100) \(.CommitP99 / 1e6 | . * 100 | round / 100) \($l)"')")
  log "round $round t1: $(echo "$res" | jq -c '{ProduceRecordsPerSec, P50, CommitP50, CommitP99, Errors}') (load $l)"
done

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
list() { echo "$1" | sed 's/ *$//; s/ /, /g'; }
load=$(cut -d' ' -f1-3 /proc/loadavg)
total=$(( $(date +%s) - began ))
# shellcheck disable=SC2086
mi=$(median ${mbps[i]})
row() {
  local r=$1 desc=$2 m last
  # shellcheck disable=SC2086
  m=$(median ${mbps[$r]})
  last=${commits[$r]%,}; last=${last##*,}
  local extra="-"
  if [ "${txn[$r]}" != 0 ]; then
    read -r n c50 c99 <<<"$last"
    extra="$n transactions per round; last round commit (flush + EndTxn) p50 $c50 ms, p99 $c99 ms"
  fi
  echo "| $desc | $m MB/s (each: $(list "${mbps[$r]}")); record p99 $(list "${p99s[$r]}") ms | $extra | $(awk -v a="$mi" -v b="$m" 'BEGIN { printf "%.0f%%", 100*b/a }') | $(list "${loads[$r]}") |"
}
section=$(
  echo "<!-- transactions begin -->"
  echo "## Transactions"
  echo
  echo "Written by \`bench/transactions.sh\` (REPEAT=$REPEAT, RECORDS=$RECORDS) on $(date -u +%Y-%m-%dT%H:%MZ) in ${total} s (commit $(git -C "$repo" rev-parse --short HEAD)$(tree_dirty "$repo" && echo ', dirty'); load average at the start $load0, at the end $load; 2 cores shared with the client and, when the load is above 3, with other work: such figures are low and noisy). One node, the default configuration, a fresh data dir; 1 KiB records, 6 partitions, $PRODUCERS producer clients, acks=all, each row its own topic; rows give the median over $REPEAT rounds. A transactional producer (kgo) commits every N records of its share: AddPartitionsToTxn as it first writes each partition, EndTxn after a flush; the coordinator persists PrepareCommit, then writes the COMMIT markers and CompleteCommit while the producer's next AddPartitionsToTxn is answered CONCURRENT_TRANSACTIONS and retried."
  echo
  echo "| row | produce throughput (MB/s of values) | transactions | vs idempotent | load at each round's start |"
  echo "|---|---|---|---|---|"
  row i "(i) idempotent, no transactions"
  row t1000 "(t1000) transactions of 1,000 records"
  row t100 "(t100) transactions of 100 records"
  per=() rec=() com=() ld=()
  for x in "${t1[@]}"; do
    read -r a b c d e <<<"$x"
    per+=("$a"); rec+=("$b"); com+=("$c / $d"); ld+=("$e")
  done
  echo "| (t1) one producer, one partition, transactions of one record, one at a time | $(median "${per[@]}") transactions/s (each: $(list "${per[*]}")); the record's produce p50 $(list "${rec[*]}") ms | commit (EndTxn) p50 / p99 $(printf '%s; ' "${com[@]}" | sed 's/; $//') ms | - | $(list "${ld[*]}") |"
  echo
  echo '```'
  printf '%s\n' "${cmds[@]}"
  echo '```'
  echo "<!-- transactions end -->"
)
write_section transactions "$section" "$OUT"
