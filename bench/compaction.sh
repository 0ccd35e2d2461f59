#!/usr/bin/env bash
# bench/compaction.sh: the log cleaner's throughput, and acks=all produce
# latency on another topic while it cleans (issue 12's benchmark; row (d)
# of docs/io-and-scale.md section 2; docs/compaction.md "Measurements"):
#   (g) the cleaner alone, in process, one core:
#       go test -bench BenchmarkClean -cpu 1 ./storage/cleaner/;
#   (t) end to end on one node with cleaner.io-rate 0 (unlimited): a
#       compacted topic (1 partition) filled with FILL_MB MiB of 1 KiB
#       records over KEYS keys, then made cleanable; MB/s of input from
#       "cleaning proposed" to "cleaned generation swapped in" (the
#       broker's log times) and the broker's CPU-s meanwhile
#       (/proc/PID/stat);
#   (a) quiet: acks=all at RATE MB/s offered to a delete-policy topic,
#       6 partitions, for SECS s; p50/p99;
#   (b) the same while the cleaner cleans a freshly filled FILL_MB MiB
#       compacted partition under the default cleaner.io-rate (or IO_RATE);
#   (b-cold) (b) again after a refill whose files were dropped from the
#       page cache, so the cleaner reads the disk;
#   (c) the same with cleaner.io-rate 0 (unlimited).
# The fill happens with min.compaction.lag.ms at one hour, so nothing is
# cleaned until the script sets it to 0 (2 s into the latency run), and is
# followed by sync, so no dirty pages of the fill are written back during
# the runs. Each of REPEAT runs uses two fresh servers (one per
# cleaner.io-rate); rows give medians and every run's figure.
# It writes a "Compaction" section into OUT (bench/RESULTS.md), replacing
# the previous one. Run alone, or as SECTIONS=compaction bench/compare.sh.
#
# Env: TUSK=path        tusk binary (default: built from this tree)
#      FILL_MB=1024     MiB of keyed records written into the compacted topic
#      KEYS=100000      distinct keys (1 KiB records: FILL_MB*1024/KEYS
#                       versions of each)
#      SEGMENT_BYTES=67108864   the compacted topic's segment.bytes
#      IO_RATE=         cleaner.io-rate of rows (b) (default: the broker's)
#      RATE=20          MB/s offered by the acks=all producers
#      SECS=30          seconds each latency run lasts
#      PRODUCERS=4      producer clients of the latency runs
#      REPEAT=3         runs; rows give medians
#      GOBENCH=1        run row (g) (0: skip it)
#      COLD=1           run row (b-cold): (b) again on the same server after
#                       a refill whose segment files were evicted from the
#                       page cache (dd iflag=nocache), so the cleaner reads
#                       the disk (0: skip it; needs fincore)
#      EXTRA=""         more tusk serve flags
#      DATA_ROOT=dir    where the data dirs go (default: a temp dir)
#      OUT=bench/RESULTS.md ("-": print the section only)
# Needs: go, curl, jq (and dd, fincore for COLD=1).
set -eEuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/section.sh
. bench/section.sh
repo=$(pwd)
: "${REPEAT:=3}" "${FILL_MB:=1024}" "${KEYS:=100000}" "${SEGMENT_BYTES:=67108864}" "${IO_RATE:=}" "${RATE:=20}" "${SECS:=30}"
: "${PRODUCERS:=4}" "${GOBENCH:=1}" "${COLD:=1}" "${EXTRA:=}" "${OUT:=bench/RESULTS.md}"
for t in go curl jq; do command -v "$t" >/dev/null || { echo "compaction.sh: $t not found" >&2; exit 1; }; done

work=$(mktemp -d)
DATA_ROOT=${DATA_ROOT:-$(mktemp -d)}
mkdir -p "$DATA_ROOT"
dir=$DATA_ROOT/compaction
pid=""
bpid=""
cleanup() {
  for p in $bpid $pid; do kill -KILL "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  rm -rf "$work" "$dir"
}
trap cleanup EXIT
trap 'echo "compaction: failed at line $LINENO; last log lines:" >&2; tail -n 20 "$dir/server.log" "$dir/bench.log" >&2 2>/dev/null || true' ERR
began=$(date +%s)
log() { echo "compaction: $(( $(date +%s) - began ))s $*" >&2; }
load0=$(cut -d' ' -f1-3 /proc/loadavg)

log "building"
if [ -z "${TUSK:-}" ]; then go build -o "$work/tusk" ./cmd/tusk; TUSK=$work/tusk; fi
go build -o "$work/topicconfig" ./bench/cmd/topicconfig
cmds=()
note() { cmds+=("$*"); }
first=1
note1() { [ "$first" != 1 ] || note "$@"; } # the commands of the first run only
hz=$(getconf CLK_TCK)
mib() { awk -v b="$1" 'BEGIN { printf "%.0f", b/1048576 }'; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.1f ms", ns/1e6 }'; }
j() { echo "$1" | jq -r "$2"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'; }
list() { local f=$1; shift; for v in "$@"; do awk -v x="$v" "BEGIN { printf \"$f \", x }"; done | sed 's/ $//; s/ /, /g'; }

# ---- (g) the cleaner in process
grows=""
if [ "$GOBENCH" != 0 ]; then
  log "(g) go test -bench BenchmarkClean -cpu 1 ./storage/cleaner/"
  c="go test -run ^\$ -bench BenchmarkClean -benchtime 10x -count $REPEAT -cpu 1 ./storage/cleaner/"
  note "$c"
  $c >"$work/gobench.txt"
  # go test's MB/s is 10^6 B/s; the rows give MiB/s like the rest.
  for sub in none zstd spill; do
    vals=$(awk -v s="BenchmarkClean/$sub" '$1 == s { for (i = 1; i <= NF; i++) if ($(i+1) == "MB/s") print $i * 1e6 / 1048576 }' "$work/gobench.txt")
    [ -n "$vals" ] || continue
    # shellcheck disable=SC2086
    grows+="| (g) cleaner in process, one core, $sub | median $(awk -v x="$(median $vals)" 'BEGIN { printf "%.0f", x }') MB/s of input over $REPEAT runs (each: $(list %.0f $vals)) | - | - |"$'\n'
  done
  grows=${grows%$'\n'}
fi

flags=(--storage-fsync always --log-level info --log-format json --cleaner-backoff 1s)
# shellcheck disable=SC2206
[ -n "$EXTRA" ] && flags+=($EXTRA)
# start_server IO_RATE: a fresh node in $dir with that cleaner.io-rate
# ("" keeps the default); sets pid, addr, http.
start_server() {
  rm -rf "$dir"; mkdir -p "$dir"
  local f=("${flags[@]}")
  [ -n "$1" ] && f+=(--cleaner-io-rate "$1")
  note1 "tusk serve --data-dir DIR --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ready-file DIR/ready.json ${f[*]}"
  "$TUSK" serve --data-dir "$dir/data" --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --ready-file "$dir/ready.json" "${f[@]}" >"$dir/server.log" 2>&1 &
  pid=$!
  for _ in $(seq 1 3000); do [ -s "$dir/ready.json" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
  [ -s "$dir/ready.json" ] || { echo "compaction: server did not start" >&2; cat "$dir/server.log" >&2; exit 1; }
  addr=$(jq -r .kafka "$dir/ready.json")
  http=$(jq -r .http "$dir/ready.json")
}
stop_server() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; }
metric() { curl -fsS "http://$http/metrics" | awk -v m="$1" '$1 == m { printf "%.0f\n", $2 }'; }
cpu_ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$pid/stat"; }
# logged_ns MESSAGE: the time (ns since the epoch) of the last server log
# line with that message for comp-0, or nothing.
logged_ns() {
  local t
  t=$(jq -r --arg m "$1" 'select(.message == $m and .tp == "comp-0") | .time' "$dir/server.log" 2>/dev/null | tail -n 1)
  [ -n "$t" ] && date -d "$t" +%s%N
}
swaps() { jq -r 'select(.message == "cleaned generation swapped in" and .tp == "comp-0") | .generation' "$dir/server.log" 2>/dev/null | wc -l; }
setlag() {
  note1 "topicconfig -brokers ADDR -topic comp -set min.compaction.lag.ms=$1"
  "$work/topicconfig" -brokers "$addr" -topic comp -set min.compaction.lag.ms="$1"
}
# fill: FILL_MB MiB of keyed records into comp (created on the first call,
# min.compaction.lag.ms one hour), then sync.
fill() {
  if [ "$1" = create ]; then
    note1 "topicconfig -brokers ADDR -topic comp -create 1 -set cleanup.policy=compact,segment.bytes=$SEGMENT_BYTES,min.cleanable.dirty.ratio=0.5,delete.retention.ms=0,min.compaction.lag.ms=3600000"
    "$work/topicconfig" -brokers "$addr" -topic comp -create 1 \
      -set cleanup.policy=compact,segment.bytes="$SEGMENT_BYTES",min.cleanable.dirty.ratio=0.5,delete.retention.ms=0,min.compaction.lag.ms=3600000
  else
    setlag 3600000
  fi
  note1 "tusk bench --brokers ADDR --json --topic comp --partitions 1 --record-size 1024 --key-space $KEYS --producers 4 --records $(( FILL_MB * 1024 )) --acks 1 --consume=false"
  "$TUSK" bench --brokers "$addr" --json --topic comp --partitions 1 --record-size 1024 --key-space "$KEYS" --producers 4 \
    --records $(( FILL_MB * 1024 )) --acks 1 --consume=false >/dev/null 2>>"$dir/bench.log"
  sync
  note1 "sync"
}
# wait_swap N SECS: waits up to SECS s for the Nth swap of comp-0.
wait_swap() {
  local k
  for k in $(seq 1 $(( $2 * 20 ))); do [ "$(swaps)" -ge "$1" ] && return 0; kill -0 "$pid" || return 1; sleep 0.05; done
  return 1
}
latency() {
  note1 "tusk bench --brokers ADDR --json --topic $1 --partitions 6 --record-size 1024 --producers $PRODUCERS --records $(( RATE * 1024 * SECS )) --acks all --rate $RATE --consume=false"
  "$TUSK" bench --brokers "$addr" --json --topic "$1" --partitions 6 --record-size 1024 --producers "$PRODUCERS" \
    --records $(( RATE * 1024 * SECS )) --acks all --rate "$RATE" --consume=false 2>>"$dir/bench.log"
}
# while_cleaning TOPIC N: a latency run on TOPIC; 2 s in, comp becomes
# cleanable; then waits (at most 10 minutes) for comp-0's Nth swap. Leaves
# the latency JSON in $work/lat.json; sets cl_secs (proposal to swap), cl_in (input bytes),
# cl_during (seconds of the cleaning inside the latency run).
while_cleaning() {
  local r0 t_start t_end tp ts
  latency "$1" >"$work/lat.json" &
  bpid=$!
  sleep 2
  r0=$(metric tusk_cleaner_read_bytes_total)
  note1 "(2 s into the run) topicconfig -brokers ADDR -topic comp -set min.compaction.lag.ms=0"
  "$work/topicconfig" -brokers "$addr" -topic comp -set min.compaction.lag.ms=0
  wait "$bpid"; bpid=""
  t_end=$(date +%s%N)
  t_start=$(( t_end - $(jq -r .Elapsed "$work/lat.json") ))
  wait_swap "$2" 600 || { echo "compaction: the cleaning did not finish within 10 minutes" >&2; exit 1; }
  tp=$(logged_ns "cleaning proposed"); ts=$(logged_ns "cleaned generation swapped in")
  cl_secs=$(awk -v a="$tp" -v b="$ts" 'BEGIN { printf "%.1f", (b-a)/1e9 }')
  cl_in=$(( ($(metric tusk_cleaner_read_bytes_total) - r0) / 2 ))
  cl_during=$(awk -v a="$tp" -v b="$ts" -v s="$t_start" -v e="$t_end" 'BEGIN { lo = a > s ? a : s; hi = b < e ? b : e; printf "%.1f", (hi > lo ? hi - lo : 0)/1e9 }')
}

qa_p99=(); qa_p50=(); d_p99=(); d_p50=(); d_secs=(); b_p99=(); b_p50=(); c_p99=(); c_p50=(); t_mbps=(); t_cpu=(); b_secs=(); c_secs=()
for i in $(seq 1 "$REPEAT"); do
  # Server D: the default cleaner.io-rate (or IO_RATE): (a), then (b).
  start_server "$IO_RATE"
  log "run $i/$REPEAT: budgeted server: filling comp with $FILL_MB MiB over $KEYS keys"
  fill create
  log "run $i/$REPEAT: (a) quiet: acks=all at $RATE MB/s for ${SECS}s"
  qa=$(latency quiet)
  qa_p99+=("$(j "$qa" .P99)"); qa_p50+=("$(j "$qa" .P50)")
  log "run $i/$REPEAT: (b) the same while comp is cleaned under cleaner.io-rate ${IO_RATE:-default}"
  while_cleaning busy 1
  qb=$(cat "$work/lat.json")
  b_p99+=("$(j "$qb" .P99)"); b_p50+=("$(j "$qb" .P50)")
  b_secs+=("$cl_secs")
  b_note="last run: $(mib "$cl_in") MiB cleaned in $cl_secs s ($(awk -v b="$cl_in" -v s="$cl_secs" 'BEGIN { printf "%.1f", b/1048576/s }') MB/s of input), $cl_during s of it inside the ${SECS} s run"
  lb=$(echo "$qb" | jq -c '{P50, P99, P999, ProduceMBps}')
  if [ "$COLD" != 0 ]; then
    log "run $i/$REPEAT: (b-cold) refilling comp, evicting its files from the page cache, then (b) again"
    fill again
    note1 "for f in DIR/logs/comp-0/*.log; do dd if=\$f iflag=nocache count=0; done   # drop their cached pages"
    for f in "$dir"/data/logs/comp-0/*.log; do dd if="$f" iflag=nocache count=0 status=none; done
    cached=$(fincore -b -n -o RES "$dir"/data/logs/comp-0/*.log 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s/1048576 }')
    size0=$(du -sb --exclude="*.deleted" "$dir/data/logs/comp-0" | cut -f1)
    while_cleaning busy 2
    qd=$(cat "$work/lat.json")
    d_p99+=("$(j "$qd" .P99)"); d_p50+=("$(j "$qd" .P50)")
    d_secs+=("$cl_secs")
    d_note="last run: $(mib "$size0") MiB on disk, ${cached:-?} MiB of it cached after the eviction; $(mib "$cl_in") MiB cleaned in $cl_secs s ($(awk -v b="$cl_in" -v s="$cl_secs" 'BEGIN { printf "%.1f", b/1048576/s }') MB/s of input), $cl_during s of it inside the ${SECS} s run"
    ld=$(echo "$qd" | jq -c '{P50, P99, P999, ProduceMBps}')
  fi
  stop_server

  # Server U: cleaner.io-rate 0: (t) quiet cleaning, then refill and (c).
  start_server 0
  log "run $i/$REPEAT: unlimited server: filling comp with $FILL_MB MiB"
  fill create
  log "run $i/$REPEAT: (t) the cleaning alone"
  size0=$(du -sb --exclude="*.deleted" "$dir/data/logs/comp-0" | cut -f1)
  r0=$(metric tusk_cleaner_read_bytes_total); w0=$(metric tusk_cleaner_written_bytes_total)
  c0=$(cpu_ticks)
  setlag 0
  wait_swap 1 600 || { echo "compaction: the cleaning did not finish within 10 minutes" >&2; exit 1; }
  c1=$(cpu_ticks)
  tp=$(logged_ns "cleaning proposed"); ts=$(logged_ns "cleaned generation swapped in")
  in=$(( ($(metric tusk_cleaner_read_bytes_total) - r0) / 2 )); out=$(( $(metric tusk_cleaner_written_bytes_total) - w0 ))
  secs=$(awk -v a="$tp" -v b="$ts" 'BEGIN { printf "%.3f", (b-a)/1e9 }')
  t_mbps+=("$(awk -v b="$in" -v s="$secs" 'BEGIN { printf "%.1f", b/1048576/s }')")
  cpu=$(awk -v a="$c0" -v b="$c1" -v hz="$hz" 'BEGIN { printf "%.2f", (b-a)/hz }')
  t_cpu+=("$(awk -v c="$cpu" -v b="$in" 'BEGIN { printf "%.2f", c/(b/1073741824) }')")
  size1=$(du -sb --exclude="*.deleted" "$dir/data/logs/comp-0" | cut -f1)
  t_note="last run: $(mib "$in") MiB in, $(mib "$out") MiB out in $secs s, broker CPU $cpu s (from the config change to the swap); log $(mib "$size0") MiB before, $(mib "$size1") MiB after (not counting replaced files the deleter still frees)"
  log "run $i/$REPEAT: unlimited server: refilling comp"
  fill again
  log "run $i/$REPEAT: (c) acks=all while comp is cleaned with cleaner.io-rate 0"
  while_cleaning busy 2
  qc=$(cat "$work/lat.json")
  c_p99+=("$(j "$qc" .P99)"); c_p50+=("$(j "$qc" .P50)")
  c_secs+=("$cl_secs")
  c_note="last run: $(mib "$cl_in") MiB cleaned in $cl_secs s ($(awk -v b="$cl_in" -v s="$cl_secs" 'BEGIN { printf "%.1f", b/1048576/s }') MB/s of input), $cl_during s of it inside the ${SECS} s run"
  lc=$(echo "$qc" | jq -c '{P50, P99, P999, ProduceMBps}')
  la=$(echo "$qa" | jq -c '{P50, P99, P999, ProduceMBps}')
  stop_server
  first=0
done

ma=$(median "${qa_p99[@]}"); mb=$(median "${b_p99[@]}"); mc=$(median "${c_p99[@]}")
ms_list() { local o=(); for v in "$@"; do o+=("$(awk -v ns="$v" 'BEGIN { printf "%.0f", ns/1e6 }')"); done; echo "${o[*]}" | sed 's/ /, /g'; }
ratios() { local -n xa=$1 xb=$2; local k o=(); for k in "${!xa[@]}"; do o+=("$(awk -v a="${xa[$k]}" -v b="${xb[$k]}" 'BEGIN { printf "%.1f×", b/a }')"); done; echo "${o[*]}" | sed 's/ /, /g'; }
lat_row() { echo "p50 $(ms "$(j "$1" .P50)"), p99 $(ms "$(j "$1" .P99)"), p99.9 $(ms "$(j "$1" .P999)") ($(j "$1" '.ProduceMBps | . * 10 | round / 10') MB/s)"; }
rate_desc=${IO_RATE:-33554432}
rate_desc=$(awk -v r="$rate_desc" 'BEGIN { printf "%.0f MiB/s", r/1048576 }')
[ -z "$IO_RATE" ] && rate_desc="the default, $rate_desc"
verdict() { awk -v a="$ma" -v b="$1" 'BEGIN { if (b <= 2*a) print "met"; else print "**missed**" }'; }
load=$(cut -d' ' -f1-3 /proc/loadavg)
total=$(( $(date +%s) - began ))
log "done in ${total}s"
section=$(
  echo "<!-- compaction begin -->"
  echo "## Compaction"
  echo
  echo "Written by \`bench/compaction.sh\` (REPEAT=$REPEAT) on $(date -u +%Y-%m-%dT%H:%MZ) in ${total} s (commit $(git -C "$repo" rev-parse --short HEAD)$(tree_dirty "$repo" && echo ', dirty'); load average at the start $load0, at the end $load; 2 cores shared with the client). One node, \`storage.fsync=always\`, \`cleaner.backoff\` 1 s. The compacted topic: 1 partition, segment.bytes $SEGMENT_BYTES, min.cleanable.dirty.ratio 0.5, delete.retention.ms 0, filled with $FILL_MB MiB of 1 KiB records over $KEYS keys (acks=1, then \`sync\`; its pages stay cached, so the cleaner reads memory and writes disk) with min.compaction.lag.ms one hour, made cleanable by setting it to 0. The cleaner reads its input twice (key map, then output): input MB/s is half of what \`cleaner.io-rate\` counts as read. Latency rows: a delete-policy topic, 6 partitions, $PRODUCERS producers, acks=all at $RATE MB/s offered for ${SECS} s; the cleaning becomes possible 2 s into the run. Target (docs/io-and-scale.md section 2, row (d)): p99 of (b) within 2× of (a)."
  echo
  echo "| row | result | target | verdict |"
  echo "|---|---|---|---|"
  [ -n "$grows" ] && echo "$grows"
  echo "| (t) end to end, cleaner.io-rate 0, no producer running | median $(median "${t_mbps[@]}") MB/s of input over $REPEAT runs (each: $(echo "${t_mbps[*]}" | sed 's/ /, /g')), broker CPU-s per GiB of input $(median "${t_cpu[@]}") (each: $(echo "${t_cpu[*]}" | sed 's/ /, /g')); $t_note | - | - |"
  echo "| (a) quiet | p99 median $(ms "$ma") over $REPEAT runs (each: $(ms_list "${qa_p99[@]}") ms); last run $(lat_row "$la") | reference | - |"
  echo "| (b) while the cleaner cleans the compacted partition, cleaner.io-rate $rate_desc | p99 median $(ms "$mb") (each: $(ms_list "${b_p99[@]}") ms; run by run $(ratios qa_p99 b_p99) of (a)); cleanings took $(echo "${b_secs[*]}" | sed 's/ /, /g') s; last run $(lat_row "$lb"); $b_note | median p99 ≤ 2× (a): $(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.1f", b/a }')× | $(verdict "$mb") |"
  if [ "$COLD" != 0 ]; then
    md=$(median "${d_p99[@]}")
    echo "| (b-cold) as (b), after a refill whose segment files were evicted from the page cache (same server, after (b)) | p99 median $(ms "$md") (each: $(ms_list "${d_p99[@]}") ms; run by run $(ratios qa_p99 d_p99) of (a)); cleanings took $(echo "${d_secs[*]}" | sed 's/ /, /g') s; last run $(lat_row "$ld"); $d_note | median p99 ≤ 2× (a): $(awk -v a="$ma" -v b="$md" 'BEGIN { printf "%.1f", b/a }')× | $(verdict "$md") |"
  fi
  echo "| (c) the same with cleaner.io-rate 0 (unlimited) | p99 median $(ms "$mc") (each: $(ms_list "${c_p99[@]}") ms; run by run $(ratios qa_p99 c_p99) of (a)); cleanings took $(echo "${c_secs[*]}" | sed 's/ /, /g') s; last run $(lat_row "$lc"); $c_note | for comparison: $(awk -v a="$ma" -v b="$mc" 'BEGIN { printf "%.1f", b/a }')× (a) | - |"
  echo
  echo '```'
  printf '%s\n' "${cmds[@]}"
  echo '```'
  echo "<!-- compaction end -->"
)
write_section compaction "$section" "$OUT"
