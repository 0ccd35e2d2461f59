#!/usr/bin/env bash
# bench/dropbehind.sh: drop-behind on and off, interleaved run by run
# (storage.drop-behind, docs/io-and-scale.md section 1). One node, 6
# partitions, PRODUCERS producers, 1 KiB records. Each run starts a fresh
# server, produces RECORDS records (the first budget's worth goes into new
# pages whatever the setting), then RECORDS more (the steady state), then
# one consumer reads the whole topic from offset 0: a consumer lagging
# 2*RECORDS KiB, beyond the drop-behind window, so with drop-behind on
# most of it comes from the disk. Rows give
# the median and every run's broker CPU-s/GB (user+system of the server,
# /proc/PID/stat) and MB/s. Between runs it waits SETTLE seconds, so the
# memory the previous server freed is handed back to the host and every
# run starts alike (docs/io-and-scale.md, "Where produce CPU goes").
# It writes a "Drop-behind" section into OUT (bench/RESULTS.md), replacing
# the previous one. Run alone, or from bench/compare.sh
# (SECTIONS=dropbehind bench/compare.sh runs only this).
#
# Env: TUSK=path        tusk binary (default: built from this tree)
#      REPEAT=2         runs of each configuration
#      RECORDS=1000000  records per run (1 KiB each; well past the budget,
#                       whose first bytes go into new pages either way)
#      BUDGET=          --storage-drop-behind of the "on" runs (default:
#                       the broker's default, or 268435456 while it is off)
#      FSYNCS="interval always"   fsync policies to run (always: acks=all)
#      SETTLE=20        seconds between runs (1 GiB freed here takes 10-15 s
#                       to be reported to the host; see docs/io-and-scale.md)
#      DATA_ROOT=dir    where the data dir goes (default: a temp dir)
#      OUT=bench/RESULTS.md ("-": print the section only)
# Needs: go, jq.
set -eEuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/section.sh
. bench/section.sh
repo=$(pwd)
: "${REPEAT:=2}" "${RECORDS:=1000000}" "${BUDGET:=}" "${FSYNCS:=interval always}" "${SETTLE:=20}" "${OUT:=bench/RESULTS.md}" "${PRODUCERS:=4}"
for t in go jq; do command -v "$t" >/dev/null || { echo "dropbehind.sh: $t not found" >&2; exit 1; }; done

work=$(mktemp -d)
DATA_ROOT=${DATA_ROOT:-$(mktemp -d)}
mkdir -p "$DATA_ROOT"
dir=$DATA_ROOT/dropbehind
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work" "$dir"
}
trap cleanup EXIT
trap 'echo "dropbehind: failed at line $LINENO; last log lines:" >&2; tail -n 20 "$dir/server.log" "$dir/bench.log" >&2 2>/dev/null || true' ERR
began=$(date +%s)
log() { echo "dropbehind: $(( $(date +%s) - began ))s $*" >&2; }

log "building"
if [ -z "${TUSK:-}" ]; then go build -o "$work/tusk" ./cmd/tusk; TUSK=$work/tusk; fi
go build -o "$work/probe" ./bench/cmd/probe
if [ -z "$BUDGET" ]; then
  BUDGET=$("$TUSK" serve --help 2>&1 | sed -nE 's/.*--storage-drop-behind .*\(default ([0-9]+)\).*/\1/p')
  # Off by default (no default in the help): 256 MiB, the documented example.
  : "${BUDGET:=268435456}"
fi
load0=$(cut -d' ' -f1-3 /proc/loadavg)
cmds=()
note() { cmds+=("$*"); }
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$pid/stat"; }
per_gb() { awk -v a="$1" -v b="$2" -v n="$3" -v hz="$hz" 'BEGIN { printf "%.2f", (b-a)/hz/(n*1024/1073741824) }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2] + v[NR/2+1]) / 2 }'; }

mkdir -p "$dir"
c="probe pagecache -dir $dir -mb 1024"
note "$c"
pc=$($work/$c)
fresh=$(echo "$pc" | sed -E 's/.*fresh_cpu_s_per_gb=([0-9.]+).*/\1/')
cached=$(echo "$pc" | sed -E 's/.*cached_cpu_s_per_gb=([0-9.]+).*/\1/')
sleep "$SETTLE"

# run FSYNC DROP: one fresh server; appends "prodMBps prodCPU consMBps consCPU"
# to $work/FSYNC-DROP.
run() {
  local fsync=$1 drop=$2 acks=1
  [ "$fsync" = always ] && acks=all
  rm -rf "$dir"; mkdir -p "$dir"
  note "tusk serve --data-dir DIR --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ready-file DIR/ready.json --storage-fsync $fsync --storage-drop-behind $drop"
  "$TUSK" serve --data-dir "$dir/data" --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --ready-file "$dir/ready.json" --storage-fsync "$fsync" --storage-drop-behind "$drop" --log-level warn >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 3000); do [ -s "$dir/ready.json" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
  [ -s "$dir/ready.json" ] || { echo "dropbehind: server did not start" >&2; cat "$dir/server.log" >&2; exit 1; }
  local addr; addr=$(jq -r .kafka "$dir/ready.json")
  local b=(--brokers "$addr" --json --partitions 6 --record-size 1024 --producers "$PRODUCERS" --topic t)
  local shown="--brokers ADDR ${b[*]:2}"
  note "tusk bench $shown --records $RECORDS --acks $acks --consume=false (twice); then tusk bench $shown --consume-only"
  local c0 c1 c2 c3 p q r
  c0=$(cpu_ticks)
  p=$("$TUSK" bench "${b[@]}" --records "$RECORDS" --acks "$acks" --consume=false 2>>"$dir/bench.log")
  c1=$(cpu_ticks)
  q=$("$TUSK" bench "${b[@]}" --records "$RECORDS" --acks "$acks" --consume=false 2>>"$dir/bench.log")
  c2=$(cpu_ticks)
  r=$("$TUSK" bench "${b[@]}" --consume-only 2>>"$dir/bench.log")
  c3=$(cpu_ticks)
  echo "$(echo "$p" | jq '.ProduceMBps | round') $(per_gb "$c0" "$c1" "$RECORDS") $(echo "$q" | jq '.ProduceMBps | round') $(per_gb "$c1" "$c2" "$RECORDS") $(echo "$r" | jq '.ConsumeMBps | round') $(per_gb "$c2" "$c3" "$(echo "$r" | jq .Consumed)")" >>"$work/$fsync-$drop"
  kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""
  rm -rf "$dir"
  sleep "$SETTLE"
}

for i in $(seq 1 "$REPEAT"); do
  for fsync in $FSYNCS; do
    for drop in "$BUDGET" 0; do
      log "run $i: fsync=$fsync drop-behind=$drop"
      run "$fsync" "$drop"
    done
  done
done
load1=$(cut -d' ' -f1-3 /proc/loadavg)
total=$(( $(date +%s) - began ))
log "done in ${total}s"

# col FILE N: the median of column N, then every run's value.
col() { echo "$(awk -v n="$2" '{ print $n }' "$1" | median) ($(awk -v n="$2" '{ printf "%s%s", sep, $n; sep = ", " }' "$1"))"; }
rows=""
for fsync in $FSYNCS; do
  for drop in "$BUDGET" 0; do
    f=$work/$fsync-$drop
    if [ "$drop" = 0 ]; then what="off"; else what="$((drop >> 20)) MiB"; fi
    acks=1; [ "$fsync" = always ] && acks=all
    target="-"
    if [ "$fsync" = interval ] && [ "$drop" != 0 ]; then
      m=$(awk '{ print $4 }' "$f" | median)
      target="≤ 1.0 CPU-s/GB: $(awk -v m="$m" 'BEGIN { print (m <= 1.0) ? "met" : "**missed**" }')"
    fi
    rows+="| produce acks=$acks fsync=$fsync, drop-behind $what: first $((RECORDS >> 10)) MiB on a fresh server | $(col "$f" 1) | $(col "$f" 2) | - |"$'\n'
    rows+="| … the next $((RECORDS >> 10)) MiB | $(col "$f" 3) | $(col "$f" 4) | $target |"$'\n'
    rows+="| … then one consumer reads the whole topic from offset 0 ($((RECORDS >> 9)) MiB behind), drop-behind $what | $(col "$f" 5) | $(col "$f" 6) | - |"$'\n'
  done
done

section=$(
  echo "<!-- dropbehind begin -->"
  echo "## Drop-behind"
  echo
  echo "Written by \`bench/dropbehind.sh\` (REPEAT=$REPEAT, RECORDS=$RECORDS) on $(date -u +%Y-%m-%dT%H:%MZ) in ${total} s (commit $(git -C "$repo" rev-parse --short HEAD)$(tree_dirty "$repo" && echo ', dirty'); load average $load0 at the start, $load1 at the end). One node, 6 partitions, $PRODUCERS producers, 1 KiB records; each run a fresh server, on and off interleaved, ${SETTLE} s apart. Page-cache probe before the runs: $fresh CPU-s/GB writing into new pages, $cached over cached ones. Medians, then every run."
  echo
  echo "| row | MB/s | broker CPU-s/GB | target |"
  echo "|---|---|---|---|"
  printf '%s' "$rows"
  echo
  echo '```'
  printf '%s\n' "${cmds[@]}" | awk '!seen[$0]++'
  echo '```'
  echo "<!-- dropbehind end -->"
)
write_section dropbehind "$section" "$OUT"
