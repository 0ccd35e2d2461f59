#!/usr/bin/env bash
# bench/bgio.sh: acks=all produce latency while background I/O runs
# (issue 18, docs/io-and-scale.md section 2), one node, fsync=always:
#   (a) quiet: acks=all at RATE MB/s offered, p50/p99/p99.9;
#   (b) the same while retention deletes OLD_MB MiB of 1 GiB segments of
#       another topic (retention.ms set small while the producers run);
#   (c) while a learner copies a partition of OLD_MB MiB: three nodes,
#       bench/bgio-learner.sh (LEARNER=0 skips it), against its own quiet
#       reference (c0) on the same cluster.
# It writes a "Background I/O" section into OUT (bench/RESULTS.md),
# replacing the previous one. Run alone, or from bench/compare.sh
# (SECTIONS=bgio bench/compare.sh runs only this).
#
# Env: TUSK=path        tusk binary (default: built from this tree)
#      OLD_MB=3072      MiB produced into the topic retention deletes
#      SEGMENT_BYTES=1073741824   its segment.bytes
#      RATE=20          MB/s offered by the acks=all producers
#      SECS=30          seconds each latency run lasts
#      DELETE_RATE=     --storage-delete-rate (default: the broker's)
#      EXTRA=""         more tusk serve flags
#      LEARNER=1        run row (c) (bench/bgio-learner.sh, 3 nodes)
#      REPEAT=1         runs of (a) then (b), each on a fresh server;
#                       the rows give the median p99 and every run's
#      BASELINE_TUSK=path   also measure (a) and (b) with this binary (e.g.
#                       a build from before the deleter), alternating
#                       run by run with TUSK, as rows (a') and (b');
#                       BASELINE_DESC describes it in the section
#      DATA_ROOT=dir    where the data dir goes (default: a temp dir)
#      OUT=bench/RESULTS.md ("-": print the section only)
# Needs: go, curl, jq.
set -eEuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/section.sh
. bench/section.sh
repo=$(pwd)
: "${REPEAT:=1}" "${LEARNER:=1}" "${OLD_MB:=3072}" "${SEGMENT_BYTES:=1073741824}" "${RATE:=20}" "${SECS:=30}" "${DELETE_RATE:=}" "${EXTRA:=}" "${OUT:=bench/RESULTS.md}" "${PRODUCERS:=4}" "${BASELINE_TUSK:=}" "${BASELINE_DESC:=given by BASELINE_TUSK}"
for t in go curl jq; do command -v "$t" >/dev/null || { echo "bgio.sh: $t not found" >&2; exit 1; }; done

work=$(mktemp -d)
DATA_ROOT=${DATA_ROOT:-$(mktemp -d)}
mkdir -p "$DATA_ROOT"
dir=$DATA_ROOT/bgio
pid=""
bpid=""
cleanup() {
  for p in $bpid $pid; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work" "$dir"
}
trap cleanup EXIT
trap 'echo "bgio: failed at line $LINENO; last log lines:" >&2; tail -n 20 "$dir/server.log" "$dir/bench.log" >&2 2>/dev/null || true' ERR
began=$(date +%s)
log() { echo "bgio: $(( $(date +%s) - began ))s $*" >&2; }

log "building"
if [ -z "${TUSK:-}" ]; then go build -o "$work/tusk" ./cmd/tusk; TUSK=$work/tusk; fi
go build -o "$work/topicconfig" ./bench/cmd/topicconfig
cmds=()
note() { cmds+=("$*"); }

flags=(--storage-fsync always --storage-retention-check-interval 1s --log-level info)
[ -n "$DELETE_RATE" ] && flags+=(--storage-delete-rate "$DELETE_RATE")
# shellcheck disable=SC2206
[ -n "$EXTRA" ] && flags+=($EXTRA)
note "tusk serve --data-dir DIR --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ready-file DIR/ready.json ${flags[*]}"
# start_server BIN: a fresh node in $dir; sets pid, addr, http.
start_server() {
  rm -rf "$dir"; mkdir -p "$dir"
  local f=("${flags[@]}")
  # A baseline build may predate --storage-delete-rate.
  [ "$1" = "$TUSK" ] || f=(--storage-fsync always --storage-retention-check-interval 1s --log-level info)
  "$1" serve --data-dir "$dir/data" --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --ready-file "$dir/ready.json" "${f[@]}" >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 3000); do [ -s "$dir/ready.json" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
  [ -s "$dir/ready.json" ] || { echo "bgio: server did not start" >&2; cat "$dir/server.log" >&2; exit 1; }
  addr=$(jq -r .kafka "$dir/ready.json")
  http=$(jq -r '.http // empty' "$dir/ready.json")
}
metric() { curl -fsS "http://$http/metrics" | awk -v m="$1" '$1 == m { printf "%.3f\n", $2 }'; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.1f ms", ns/1e6 }'; }
j() { echo "$1" | jq -r "$2"; }
records=$(( RATE * 1024 * SECS ))
first=1
note1() { [ "$first" != 1 ] || note "$@"; } # the commands of the first run only
# latency TOPIC: acks=all at RATE MB/s for about SECS seconds; prints JSON.
latency() {
  note1 "tusk bench --brokers ADDR --json --topic $1 --partitions 6 --record-size 1024 --producers $PRODUCERS --records $records --acks all --rate $RATE --consume=false"
  "$TUSK" bench --brokers "$addr" --json --topic "$1" --partitions 6 --record-size 1024 --producers "$PRODUCERS" \
    --records "$records" --acks all --rate "$RATE" --consume=false 2>>"$dir/bench.log"
}
lat_row() { echo "p50 $(ms "$(j "$1" .P50)"), p99 $(ms "$(j "$1" .P99)"), p99.9 $(ms "$(j "$1" .P999)") ($(j "$1" '.ProduceMBps | . * 10 | round / 10') MB/s)"; }
# deleted_by: the deleter has freed something since d0 and has nothing
# pending.
deleted_by() {
  local p
  p=$(metric tusk_storage_pending_deletion_bytes)
  [ -z "$p" ] && return 0 # a build without the deleter
  [ "$p" = 0.000 ] && [ "$(metric tusk_storage_deleted_bytes_total)" != "$d0" ]
}

# one_run BIN PREFIX: a fresh server of BIN; fill old, (a) quiet, (b)
# while retention deletes old. Appends to PREFIX_a, PREFIX_b (p99s) and
# sets PREFIX_qa, PREFIX_qb (the JSON) and PREFIX_note.
one_run() {
  local bin=$1 pre=$2 qa qb t0 t2 d1 d2 th0 th1 note_ left
  start_server "$bin"
  log "run $i/$REPEAT ($pre): filling topic old with $OLD_MB MiB (1 partition, segment.bytes $SEGMENT_BYTES)"
  note1 "topicconfig -brokers ADDR -topic old -create 1 -set segment.bytes=$SEGMENT_BYTES"
  "$work/topicconfig" -brokers "$addr" -topic old -create 1 -set segment.bytes="$SEGMENT_BYTES"
  note1 "tusk bench --brokers ADDR --json --topic old --partitions 1 --record-size 1024 --producers $PRODUCERS --records $(( OLD_MB * 1024 )) --acks 1 --consume=false"
  "$TUSK" bench --brokers "$addr" --json --topic old --partitions 1 --record-size 1024 --producers "$PRODUCERS" \
    --records $(( OLD_MB * 1024 )) --acks 1 --consume=false >/dev/null 2>>"$dir/bench.log"
  sync # no dirty pages of the fill left to write back during the runs
  note1 "sync"
  log "run $i/$REPEAT ($pre): (a) quiet: acks=all at $RATE MB/s for ${SECS}s"
  qa=$(latency quiet)
  log "run $i/$REPEAT ($pre): (b) the same while retention deletes topic old"
  d0=$(metric tusk_storage_deleted_bytes_total)
  th0=$(metric tusk_storage_background_throttled_seconds_total)
  latency busy >"$work/b.json" &
  bpid=$!
  sleep 2
  note1 "(2 s into the run) topicconfig -brokers ADDR -topic old -set retention.ms=1000"
  t0=$(date +%s%N)
  "$work/topicconfig" -brokers "$addr" -topic old -set retention.ms=1000
  t2=""
  while kill -0 "$bpid" 2>/dev/null; do
    if [ -z "$t2" ] && deleted_by; then t2=$(date +%s%N); fi
    sleep 0.2
  done
  wait "$bpid"; bpid=""
  qb=$(cat "$work/b.json")
  d1=$(metric tusk_storage_deleted_bytes_total)
  # Not finished during the run: wait (at most 5 minutes) for the rest.
  if [ -z "$t2" ]; then
    for _ in $(seq 1 1500); do deleted_by && break; sleep 0.2; done
    t2=$(date +%s%N)
  fi
  d2=$(metric tusk_storage_deleted_bytes_total)
  th1=$(metric tusk_storage_background_throttled_seconds_total)
  left=$(du -sm "$dir/data/logs" | cut -f1)
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true; pid=""
  if [ "$(awk -v a="$d0" -v b="$d2" 'BEGIN { print (b > a) }')" = 1 ]; then
    note_="last run: $(awk -v a="$d0" -v b="$d2" 'BEGIN { printf "%.0f", (b-a)/1048576 }') MiB freed in $(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.1f", (b-a)/1e9 }') s after retention.ms was set ($(awk -v a="$d0" -v b="$d1" 'BEGIN { printf "%.0f", (b-a)/1048576 }') MiB during the run; $(awk -v a="$th0" -v b="$th1" 'BEGIN { printf "%.1f", b-a }') s throttled); $left MiB left on disk"
  else
    # A build without the paced deleter: its unlinks are instant.
    note_="no deleter metrics (unlinks at once); $left MiB left on disk"
  fi
  eval "${pre}_a+=(\"\$(j \"\$qa\" .P99)\"); ${pre}_b+=(\"\$(j \"\$qb\" .P99)\")"
  printf -v "${pre}_qa" '%s' "$qa"
  printf -v "${pre}_qb" '%s' "$qb"
  printf -v "${pre}_note" '%s' "$note_"
  first=0
}
new_a=(); new_b=(); base_a=(); base_b=()
for i in $(seq 1 "$REPEAT"); do
  one_run "$TUSK" new
  if [ -n "$BASELINE_TUSK" ]; then one_run "$BASELINE_TUSK" base; fi
done
drate="the default"
[ -n "$DELETE_RATE" ] && drate=$(awk -v r="$DELETE_RATE" 'BEGIN { printf "%.0f MiB/s", r/1048576 }')
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'; }
list_ms() { for v in "$@"; do awk -v ns="$v" 'BEGIN { printf "%.0f ", ns/1e6 }'; done | sed 's/ $//; s/ /, /g'; }
ratios() { local -n xa=$1 xb=$2; local k out=(); for k in "${!xa[@]}"; do out+=("$(awk -v a="${xa[$k]}" -v b="${xb[$k]}" 'BEGIN { printf "%.1f×", b/a }')"); done; echo "${out[*]}" | sed 's/ /, /g'; }
# rows PREFIX LABEL_A LABEL_B [WHAT]: the Markdown rows of one binary.
rows() {
  local -n xa=${1}_a xb=${1}_b
  local qa=${1}_qa qb=${1}_qb nt=${1}_note ma mb
  ma=$(median "${xa[@]}"); mb=$(median "${xb[@]}")
  echo "| $2 ${4:-}quiet | p99 median $(ms "$ma") over $REPEAT runs (each: $(list_ms "${xa[@]}") ms); last run $(lat_row "${!qa}") | reference | - |"
  echo "| $3 ${4:-}while retention deletes $OLD_MB MiB (segment.bytes $SEGMENT_BYTES) of another topic | p99 median $(ms "$mb") (each: $(list_ms "${xb[@]}") ms; run by run $(ratios "${1}_a" "${1}_b") of $2); last run $(lat_row "${!qb}"); ${!nt} | median p99 ≤ 2× $2: $(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.1f", b/a }')× | $(awk -v a="$ma" -v b="$mb" 'BEGIN { if (b <= 2*a) print "met"; else print "**missed**" }') |"
}
abrows=$(rows new "(a)" "(b)")
if [ -n "$BASELINE_TUSK" ]; then
  abrows+=$'\n'$(rows base "(a')" "(b')" "baseline build, ")
fi
if [ "$LEARNER" != 0 ]; then
  # REPEAT fresh clusters; the pair of rows whose (c)/(c0) p99 ratio is
  # the median is shown, with every run's ratio.
  ratios=()
  for i in $(seq 1 "$REPEAT"); do
    log "(c) learner copy (bench/bgio-learner.sh), run $i/$REPEAT"
    rows_i=$(TUSK=$TUSK TOPICCONFIG=$work/topicconfig OLD_MB=$OLD_MB RATE=$RATE SECS=$SECS PRODUCERS=$PRODUCERS \
      EXTRA=$EXTRA CMDS=$work/learner-cmds.txt DATA_ROOT=$DATA_ROOT bench/bgio-learner.sh)
    r=$(echo "$rows_i" | sed -nE 's/.*\(c0\): ([0-9.]+)×.*/\1/p')
    ratios+=("$r")
    echo "$r" >"$work/learner-$i.ratio"
    echo "$rows_i" >"$work/learner-$i.rows"
  done
  med=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ l[NR] = $0 } END { print l[int((NR+1)/2)] }')
  for i in $(seq 1 "$REPEAT"); do
    if [ "$(cat "$work/learner-$i.ratio")" = "$med" ]; then crows=$(cat "$work/learner-$i.rows"); break; fi
  done
  if [ "$REPEAT" -gt 1 ]; then
    crows=$(echo "$crows" | sed -E "s/\| p99 ≤ 2× \(c0\): ([0-9.]+)× \|/| median p99 ratio over $REPEAT runs (each: $(IFS=,; echo "${ratios[*]}" | sed 's/,/×, /g')×) ≤ 2×: \1× |/")
  fi
  while IFS= read -r l; do cmds+=("$l"); done < <(awk '!seen[$0]++' "$work/learner-cmds.txt")
else
  crows="| (c) while a learner copies a 3 GB partition | not measured (LEARNER=0) | p99 ≤ 2× (c0) | not measured |"
fi
load=$(cut -d' ' -f1-3 /proc/loadavg)
total=$(( $(date +%s) - began ))
log "done in ${total}s"

section=$(
  echo "<!-- bgio begin -->"
  echo "## Background I/O"
  echo
  echo "Written by \`bench/bgio.sh\` (REPEAT=$REPEAT) on $(date -u +%Y-%m-%dT%H:%MZ) in ${total} s (commit $(git -C "$repo" rev-parse --short HEAD)$(tree_dirty "$repo" && echo ', dirty'); load average at the end $load). One node, \`storage.fsync=always\`, 6 partitions, $PRODUCERS producers, 1 KiB records, acks=all at $RATE MB/s offered for ${SECS} s per row; delete rate $drate.$([ -n "$BASELINE_TUSK" ] && echo " Rows (a') and (b') ran a baseline build ($BASELINE_DESC), alternating run by run with (a) and (b).") Issue 18's target: p99 of (b) within 2× of (a), and of (c) within 2× of (c0), the same cluster quiet."
  echo
  echo "| row | produce latency | target | verdict |"
  echo "|---|---|---|---|"
  echo "$abrows"
  echo "$crows"
  echo
  echo '```'
  printf '%s\n' "${cmds[@]}"
  echo '```'
  echo "<!-- bgio end -->"
)
write_section bgio "$section" "$OUT"
