#!/usr/bin/env bash
# bench/share.sh: share-group consume throughput (issue 17; KIP-932,
# docs/groups-next.md part B) with 1, 4 and 16 kgo share consumers of one
# group reading one partition together and accepting every record
# (bench/cmd/sharebench). One node with the default configuration (a
# fresh data dir), RECORDS records of 1 KiB produced once per round to a
# new one-partition topic; each consumer count reads them all in a new
# group started at offset 0 (AlterShareGroupOffsets). RUNS rounds; rows
# give the median and every round's figure. It writes a "Share groups"
# section into OUT (bench/RESULTS.md), replacing the previous one.
#
# Env: TUSK=path        tusk binary (default: built from this tree)
#      RECORDS=200000   records per round
#      RUNS=3           rounds
#      COUNTS=1,4,16    consumer counts
#      OUT=bench/RESULTS.md ("-": print the section only)
# Needs: go.
set -eEuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/section.sh
. bench/section.sh
repo=$(pwd)
: "${RECORDS:=200000}" "${RUNS:=3}" "${COUNTS:=1,4,16}" "${OUT:=bench/RESULTS.md}"
work=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'echo "share: failed at line $LINENO; last log lines:" >&2; tail -n 15 "$work/server.log" >&2 2>/dev/null || true' ERR
began=$(date +%s)
log() { echo "share: $(( $(date +%s) - began ))s $*" >&2; }
load0=$(cut -d' ' -f1-3 /proc/loadavg)

log "building"
if [ -z "${TUSK:-}" ]; then go build -o "$work/tusk" ./cmd/tusk; TUSK=$work/tusk; fi
go build -o "$work/sharebench" ./bench/cmd/sharebench
serve=(serve --data-dir "$work/data" --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ready-file "$work/ready.json" --log-level warn)
"$TUSK" "${serve[@]}" >"$work/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 3000); do [ -s "$work/ready.json" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
[ -s "$work/ready.json" ] || { echo "share: the node did not start" >&2; tail -20 "$work/server.log" >&2; exit 1; }
addr=$(sed -n 's/.*"kafka":"\([^"]*\)".*/\1/p' "$work/ready.json")

declare -A all
for r in $(seq 1 "$RUNS"); do
  while read -r line; do
    k=$(sed -n 's/.*consumers=\([0-9]*\).*/\1/p' <<<"$line")
    rps=$(sed -n 's/.*records_per_s=\([0-9]*\).*/\1/p' <<<"$line")
    mbps=$(sed -n 's/.*MBps=\([0-9.]*\).*/\1/p' <<<"$line")
    red=$(sed -n 's/.*redelivered=\([0-9]*\).*/\1/p' <<<"$line")
    all[$k]+="$rps $mbps $red $(cut -d' ' -f1 /proc/loadavg);"
    log "round $r: $line"
  done < <("$work/sharebench" -brokers "$addr" -topic "share-$r" -records "$RECORDS" -size 1024 -consumers "$COUNTS")
done
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
load1=$(cut -d' ' -f1-3 /proc/loadavg)
total=$(( $(date +%s) - began ))
median() { sort -g | awk '{ l[NR] = $0 } END { print l[int((NR+1)/2)] }'; }
rows=""
for k in ${COUNTS//,/ }; do
  runs=${all[$k]}
  rps=$(tr ';' '\n' <<<"$runs" | awk 'NF { print $1 }' | median)
  mbps=$(tr ';' '\n' <<<"$runs" | awk 'NF { print $2 }' | median)
  each=$(tr ';' '\n' <<<"$runs" | awk 'NF { printf "%s%s", sep, $1; sep = ", " }')
  red=$(tr ';' '\n' <<<"$runs" | awk 'NF { printf "%s%s", sep, $3; sep = ", " }')
  loads=$(tr ';' '\n' <<<"$runs" | awk 'NF { printf "%s%s", sep, $4; sep = ", " }')
  rows+="| $k | $rps records/s (each: $each) | $mbps MB/s | $red | $loads |"$'\n'
done
section=$(
  echo "<!-- share begin -->"
  echo "## Share groups"
  echo
  echo "Written by \`bench/share.sh\` (RUNS=$RUNS, RECORDS=$RECORDS) on $(date -u +%Y-%m-%dT%H:%MZ) in ${total} s (commit $(git -C "$repo" rev-parse --short HEAD)$(tree_dirty "$repo" && echo ', dirty'); load average $load0 at the start, $load1 at the end, from other work on this 2-core machine shared with the clients: figures are low and noisy). One node, the default configuration, a fresh data dir; each round produces $RECORDS 1 KiB records to a new one-partition topic, then each consumer count reads them all as a new share group started at offset 0, every consumer a kgo client with \`kgo.ShareGroup\` accepting each record (AckAccept), timed from the first poll until every offset was delivered and every acknowledgement flushed. Redelivered: deliveries beyond one per record."
  echo
  echo "| consumers | records/s (median) | MB/s | redelivered | load average as each round's count finished |"
  echo "|---|---|---|---|---|"
  printf '%s' "$rows"
  echo
  echo '```'
  echo "tusk ${serve[*]}" | sed "s#$work#DIR#g"
  echo "go run ./bench/cmd/sharebench -brokers ADDR -topic share-N -records $RECORDS -size 1024 -consumers $COUNTS"
  echo '```'
  echo "<!-- share end -->"
)
write_section share "$section" "$OUT"
