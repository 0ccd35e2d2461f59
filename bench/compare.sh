#!/usr/bin/env bash
# bench/compare.sh: measure this machine's limits, kfake and tusk side by
# side in one run, and write bench/RESULTS.md (a Markdown table with each
# figure beside its target, the machine and the exact commands).
#
# Usage: bench/compare.sh            full run (about 3 minutes here, and the
#                                    sections below; see SKIP_*)
#        QUICK=1 bench/compare.sh    smoke run (about 1.5 minutes), small sizes
# Env:   DATA_ROOT=dir   where data dirs go (default: a temp dir under
#                        $TMPDIR); the disk figures are for its file system
#        RECORDS, RATE_RECORDS, RECOVERY_MB, RECOVERY_PARTITIONS,
#        BIG_PARTITIONS, PRODUCERS, DD_MB, PAGECACHE_MB, RTT_RECORDS, OUT
#                        override the sizes below
#        MODES="auto syscall uring"   storage.io modes to run, in this order
#        SECTIONS=bgio   run only the background I/O section (bench/bgio.sh,
#                        about 2 minutes; it rewrites its own section of OUT)
#        SKIP_BGIO=1     leave the background I/O section out of a full run
#        SECTIONS=replication   run only the replication section
#                        (bench/replication.sh: one node vs three at a fixed
#                        acks=all load, about 2 minutes)
#        SKIP_REPLICATION=1   leave it out of a full run
#        SECTIONS=dropbehind   run only the drop-behind section
#                        (bench/dropbehind.sh: storage.drop-behind on and
#                        off, interleaved, produce and a lagging consumer;
#                        about 4 minutes with its REPEAT=2)
#        SKIP_DROPBEHIND=1    leave it out of a full run
#        SECTIONS=scale   run only the cluster-scale rows: `tusk bench scale
#                        --results` at 3,000 and 30,000 partitions (SCALE="3000
#                        30000"), then bench/faults.sh (failover of a node's
#                        ~10,000 leaderships, rolling restart under a
#                        producer to 1,000 partitions); about 12 minutes
#        SECTIONS=faults  run only bench/faults.sh
#        SKIP_SCALE=1    leave the cluster-scale rows out of a full run
#        SECTIONS=compaction   run only the compaction section
#                        (bench/compaction.sh: cleaner throughput, and
#                        acks=all p99 on another topic while it cleans;
#                        12-15 minutes with its REPEAT=3); a full run
#                        leaves it out (it keeps the section already in OUT)
# Needs: go, dd, curl, jq.
set -eEuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/section.sh
. bench/section.sh
if [ "${SECTIONS:-}" = bgio ]; then exec bench/bgio.sh; fi
if [ "${SECTIONS:-}" = replication ]; then exec bench/replication.sh; fi
if [ "${SECTIONS:-}" = compaction ]; then exec bench/compaction.sh; fi
if [ "${SECTIONS:-}" = dropbehind ]; then exec bench/dropbehind.sh; fi
if [ "${SECTIONS:-}" = faults ]; then exec bench/faults.sh; fi
# scale_rows TUSK OUT: the cluster-scale rows (SECTIONS=scale).
scale_rows() {
  local p
  for p in ${SCALE:-3000 30000}; do
    echo "compare: tusk bench scale --partitions $p" >&2
    "$1" bench scale --partitions "$p" --timeout 900s --results "$2" >&2
  done
  TUSK=$1 OUT=$2 bench/faults.sh >/dev/null
}
if [ "${SECTIONS:-}" = scale ]; then
  go build -o "${TMPDIR:-/tmp}/tusk-compare-scale" ./cmd/tusk
  scale_rows "${TMPDIR:-/tmp}/tusk-compare-scale" "${OUT:-bench/RESULTS.md}"
  exit 0
fi
repo=$(pwd)
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  : "${RECORDS:=100000}" "${RATE_RECORDS:=40000}" "${RECOVERY_MB:=100}" "${RECOVERY_PARTITIONS:=1000}"
  : "${BIG_PARTITIONS:=10000}" "${DD_MB:=256}" "${FSYNC_OPS:=200}" "${TCP_SECS:=1}" "${PAGECACHE_MB:=1024}" "${RTT_RECORDS:=2000}" "${RETAIN_RECORDS:=300000}" "${RETAIN_SEG_MB:=4}"
else
  # 2,000,000 records (1.9 GiB) per throughput row: with 500,000 each row
  # lasted about a second and a new process's first-touch costs (the
  # client's and server's buffers growing, new heap pages faulted in by this
  # VM) dominated it. The null broker then measured 0.88-0.99 CPU-s/GB,
  # against 0.40 over 2,000,000 (docs/io-and-scale.md, "Measuring it").
  : "${RECORDS:=2000000}" "${RATE_RECORDS:=200000}" "${RECOVERY_MB:=1024}" "${RECOVERY_PARTITIONS:=1000}"
  : "${BIG_PARTITIONS:=10000}" "${DD_MB:=1024}" "${FSYNC_OPS:=2000}" "${TCP_SECS:=3}" "${PAGECACHE_MB:=2048}" "${RTT_RECORDS:=5000}" "${RETAIN_RECORDS:=1000000}" "${RETAIN_SEG_MB:=32}"
fi
: "${PRODUCERS:=4}" "${OUT:=bench/RESULTS.md}"
for t in go dd curl jq; do command -v "$t" >/dev/null || { echo "compare.sh: $t not found" >&2; exit 1; }; done

work=$(mktemp -d)
DATA_ROOT=${DATA_ROOT:-$(mktemp -d)}
mkdir -p "$DATA_ROOT"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work" "$DATA_ROOT"/cmp-*
}
trap cleanup EXIT
on_err() {
  echo "compare: failed at line $1; last log lines:" >&2
  tail -n 20 "${dir:-/nonexistent}/bench.log" "${dir:-/nonexistent}/server.log" >&2 2>/dev/null || true
}
trap 'on_err $LINENO' ERR
began=$(date +%s)
log() { echo "compare: $(( $(date +%s) - began ))s $*" >&2; }

log "building"
go build -o "$work/tusk" ./cmd/tusk
go build -o "$work/probe" ./bench/cmd/probe
# kfake comes from the module cache (github.com/twmb/franz-go/pkg/kfake, the
# version in go.mod) behind the same `serve` command line as tusk.
go build -o "$work/kfake" ./compat-tests/internal/kfaketusk
# The null broker (bench/cmd/nullbroker): answers Produce without storing,
# reading requests into reused buffers, so it costs what a broker must at
# least (read the bytes, answer) and nothing more.
go build -o "$work/nullbroker" ./bench/cmd/nullbroker
TUSK=$work/tusk

rows=()   # table rows
# note records an exact command for RESULTS.md (a file: bench runs in $(...)).
note() { echo "$*" >>"$work/cmds.txt"; }
# row MEASUREMENT RESULT TARGET VERDICT [BROKER_CPU]
row() { rows+=("| $1 | $2 | ${5:--} | $3 | $4 |"); }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f%%", 100*a/b; else print "n/a" }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a >= b) }'; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.2f ms", ns/1e6 }'; }
verdict() { if ge "$1" "$2"; then echo "met"; else echo "**missed**"; fi; }

# ---- machine
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
mem=$(awk '/MemTotal/ { printf "%.1f GiB", $2/1048576 }' /proc/meminfo)
fsline=$(df -T "$DATA_ROOT" | awk 'NR==2 { print $1 " (" $2 ")" }')
dev=$(df "$DATA_ROOT" | awk 'NR==2 { print $1 }' | sed 's#/dev/##; s/[0-9]*$//; s/p$//')
rot=$(cat "/sys/block/$dev/queue/rotational" 2>/dev/null || echo "?")
load=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- limits
log "dd ($DD_MB MiB)"
c="dd if=/dev/zero of=$DATA_ROOT/cmp-dd bs=1M count=$DD_MB conv=fdatasync"
note "$c"
ddout=$($c 2>&1 | tail -1)
rm -f "$DATA_ROOT/cmp-dd"
dd_bytes=$(echo "$ddout" | awk '{ print $1 }')
dd_secs=$(echo "$ddout" | sed -E 's/.* ([0-9.]+) s,.*/\1/')
dd_mbps=$(awk -v b="$dd_bytes" -v s="$dd_secs" 'BEGIN { printf "%.1f", b/1048576/s }')
row "dd sequential write + fdatasync" "$dd_mbps MB/s" "disk limit" "-"

log "fdatasync probe"
mkdir -p "$DATA_ROOT/cmp-probe"
c="probe fsync -dir $DATA_ROOT/cmp-probe -n $FSYNC_OPS -size 4096"
note "$c"
fs=$($work/$c)
fs_p50=$(echo "$fs" | sed -E 's/.*p50_us=([0-9]+).*/\1/')
fs_p99=$(echo "$fs" | sed -E 's/.*p99_us=([0-9]+).*/\1/')
row "4 KiB write+fdatasync p50 / p99" "$fs_p50 µs / $fs_p99 µs" "latency limit" "-"

log "loopback tcp"
c="probe tcp -secs $TCP_SECS -size 1048576"
note "$c"
tcp_mbps=$($work/$c | sed -E 's/.*mbps=([0-9.]+).*/\1/')
row "loopback TCP, one stream, 1 MiB writes" "$tcp_mbps MB/s" "network limit" "-"

log "page cache write cost"
c="probe pagecache -dir $DATA_ROOT/cmp-probe -mb $PAGECACHE_MB"
note "$c"
pc=$($work/$c)
row "buffered writes: CPU-s/GB into new pages / over cached pages" \
  "$(echo "$pc" | sed -E 's/.*fresh_cpu_s_per_gb=([0-9.]+).*/\1/') / $(echo "$pc" | sed -E 's/.*cached_cpu_s_per_gb=([0-9.]+).*/\1/')" \
  "kernel cost per GB any page-cache broker pays (see docs/io-and-scale.md)" "-"

# ---- servers
# start NAME BIN FSYNC [extra serve flags...]: starts a fresh server; sets
# pid, addr, http, dir.
start() {
  local name=$1 bin=$2 fsync=$3; shift 3
  dir=$DATA_ROOT/cmp-$name
  rm -rf "$dir"; mkdir -p "$dir"
  note "$(basename "$bin") serve --data-dir $dir/data --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ready-file $dir/ready.json --storage-fsync $fsync --log-level warn $*"
  "$bin" serve --data-dir "$dir/data" --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
    --ready-file "$dir/ready.json" --storage-fsync "$fsync" --log-level warn "$@" >"$dir/server.log" 2>&1 &
  pid=$!
  wait_ready "$dir/ready.json"
}
wait_ready() {
  for _ in $(seq 1 3000); do [ -s "$1" ] && break; kill -0 "$pid" 2>/dev/null || break; sleep 0.01; done
  [ -s "$1" ] || { echo "compare: server did not become ready; log:" >&2; cat "$dir/server.log" >&2; exit 1; }
  addr=$(jq -r .kafka "$1")
  http=$(jq -r '.http // empty' "$1")
}
# stop ends the server, then writes back what it left dirty: kfake never
# syncs, and the kernel wrote its ~500 MiB back 30 s later
# (dirty_expire_centisecs), in the middle of a later row (a 0.3 s stall
# of every fsync, which read as p99 257-398 ms in the io=syscall 20 MB/s
# row of four runs; see docs/io-and-scale.md, "Measuring it").
#
# It then deletes the server's data: on this VM a page-cache page costs
# several times more CPU once the guest touches memory beyond what the
# host has recently backed (the first ~8 GB here), so data kept from
# earlier rows made later rows slower for reasons outside the broker: a
# Tusk row measured 0.75 CPU-s/GB with 2 GB cached and 2.8 with 8 GB
# (docs/io-and-scale.md, "Measuring it").
stop() { kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; sync; rm -rf "$dir/data"; }
# bench ARGS...: runs tusk bench against $addr; prints its JSON result.
bench() {
  note "tusk bench --brokers ADDR --json --partitions 6 --record-size 1024 --producers $PRODUCERS $*"
  "$TUSK" bench --brokers "$addr" --json --partitions 6 --record-size 1024 --producers "$PRODUCERS" "$@" 2>>"$dir/bench.log"
}
# cpu_ticks: the server's user+system CPU time so far, in clock ticks
# (/proc/PID/stat fields 14 and 15, counted after the parenthesised name).
cpu_ticks() { awk '{ s = $0; sub(/.*\) /, "", s); split(s, f, " "); print f[12] + f[13] }' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
# cpu_per_gb T0 T1 RECORDS: the server's CPU-seconds per GiB of record
# values (1 KiB each) between two cpu_ticks readings. Unlike MB/s it hardly
# depends on what else the machine runs.
cpu_per_gb() { awk -v a="$1" -v b="$2" -v n="$3" -v hz="$hz" 'BEGIN { if (n > 0) printf "%.2f", (b-a)/hz/(n*1024/1073741824); else print "n/a" }'; }
metric() { curl -fsS "http://$http/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
j() { echo "$1" | jq -r "$2"; }

log "null broker: produce acks=1"
# What the client and loopback cost with a broker that only reads the
# requests and acks them: the ceiling for every broker here.
start null "$work/nullbroker" never --topic-partitions 6
c0=$(cpu_ticks)
r=$(bench --topic t1 --records "$RECORDS" --acks 1 --consume=false)
c1=$(cpu_ticks)
null_mbps=$(j "$r" '.ProduceMBps | . * 10 | round / 10')
row "null broker produce acks=1 (acks without storing)" "$null_mbps MB/s, p99 $(ms "$(j "$r" .P99)")" "ceiling" "-" "$(cpu_per_gb "$c0" "$c1" "$(j "$r" .Produced)")"
# The client's and loopback's own share of a round trip: the floor under
# the broker's one-record acks=all round trip below.
r=$(PRODUCERS=1 bench --topic t4 --partitions 1 --records "$RTT_RECORDS" --acks all --sequential --consume=false)
row "null broker one producer acks=all round trip (one record at a time)" "p50 $(ms "$(j "$r" .P50)"), p99 $(ms "$(j "$r" .P99)")" "floor (client and loopback)" "-"
stop

log "kfake: produce acks=1"
start kfake "$work/kfake" interval --topic-partitions 6
c0=$(cpu_ticks)
r=$(bench --topic t1 --records "$RECORDS" --acks 1 --consume=false)
c1=$(cpu_ticks)
kfake_mbps=$(j "$r" '.ProduceMBps | . * 10 | round / 10')
row "kfake produce acks=1 (no fsync)" "$kfake_mbps MB/s, p99 $(ms "$(j "$r" .P99)")" "reference" "-" "$(cpu_per_gb "$c0" "$c1" "$(j "$r" .Produced)")"
r=$(bench --topic t1 --consume-only)
c2=$(cpu_ticks)
row "kfake consume (page cache)" "$(j "$r" '.ConsumeMBps | . * 10 | round / 10') MB/s" "reference" "-" "$(cpu_per_gb "$c1" "$c2" "$(j "$r" .Consumed)")"
stop

# --storage-io arrives with the io_uring backend; use it only if present.
if "$TUSK" serve --help 2>&1 | grep -q -- '--storage-io'; then
  modes=(${MODES:-auto syscall uring})  # auto is the default: ring for group-commit fdatasyncs, pwrite for writes
else
  modes=(default)
  row "tusk --storage-io uring" "skipped" "this build has no --storage-io flag" "-"
fi
for mode in "${modes[@]}"; do
  io=(); label="tusk"
  if [ "$mode" != default ]; then io=(--storage-io "$mode"); label="tusk io=$mode"; fi

  log "$label: produce acks=1 fsync=interval, consume"
  start "tusk-$mode-interval" "$TUSK" interval "${io[@]}"
  c0=$(cpu_ticks)
  r=$(bench --topic t1 --records "$RECORDS" --acks 1 --consume=false)
  c1=$(cpu_ticks)
  int_mbps=$(j "$r" '.ProduceMBps | . * 10 | round / 10')
  int_cpu=$(cpu_per_gb "$c0" "$c1" "$(j "$r" .Produced)")
  row "$label produce acks=1 fsync=interval" "$int_mbps MB/s, p99 $(ms "$(j "$r" .P99)")" \
    "≥ 1.5× kfake ($(ratio "$int_mbps" "$kfake_mbps") of kfake); ≥ 60% of null ($(ratio "$int_mbps" "$null_mbps")); ≤ 1.0 CPU-s/GB" \
    "$(missed=()
       ge "$int_mbps" "$(awk -v k="$kfake_mbps" 'BEGIN{print 1.5*k}')" || missed+=("1.5× kfake")
       ge "$int_mbps" "$(awk -v d="$null_mbps" 'BEGIN{print 0.6*d}')" || missed+=("60% of null")
       ge 1.0 "$int_cpu" || missed+=("1.0 CPU-s/GB")
       if [ ${#missed[@]} = 0 ]; then echo met; else echo "**missed**: $(IFS=,; echo "${missed[*]}" | sed 's/,/, /g')"; fi)" \
    "$int_cpu"
  sf0=$(metric tusk_fetch_sendfile_bytes_total)
  c1=$(cpu_ticks)
  r=$(bench --topic t1 --consume-only)
  c2=$(cpu_ticks)
  cons_mbps=$(j "$r" '.ConsumeMBps | . * 10 | round / 10')
  sf1=$(metric tusk_fetch_sendfile_bytes_total)
  row "$label consume the topic after it (the part behind the storage.drop-behind window from disk)" "$cons_mbps MB/s ($(awk -v a="$sf0" -v b="$sf1" 'BEGIN{printf "%.0f", (b-a)/1048576}') MiB by sendfile)" \
    "≥ 70% of loopback ($(ratio "$cons_mbps" "$tcp_mbps"))" "$(verdict "$cons_mbps" "$(awk -v t="$tcp_mbps" 'BEGIN{print 0.7*t}')")" \
    "$(cpu_per_gb "$c1" "$c2" "$(j "$r" .Consumed)")"
  stop

  log "$label: produce acks=all fsync=always"
  start "tusk-$mode-always" "$TUSK" always "${io[@]}"
  f0=$(metric tusk_storage_fsyncs_total); b0=$(metric tusk_storage_fsync_batches_total)
  c0=$(cpu_ticks)
  r=$(bench --topic t2 --records "$RECORDS" --acks all --consume=false)
  c1=$(cpu_ticks)
  f1=$(metric tusk_storage_fsyncs_total); b1=$(metric tusk_storage_fsync_batches_total)
  al_mbps=$(j "$r" '.ProduceMBps | . * 10 | round / 10')
  secs=$(j "$r" '.Elapsed / 1e9')
  fps=$(awk -v a="$f0" -v b="$f1" -v s="$secs" 'BEGIN { printf "%.0f", (b-a)/s }')
  bpf=$(awk -v a="$f0" -v b="$f1" -v c="$b0" -v d="$b1" 'BEGIN { if (b > a) printf "%.1f", (d-c)/(b-a); else print "n/a" }')
  row "$label produce acks=all fsync=always" "$al_mbps MB/s, p99 $(ms "$(j "$r" .P99)"); $fps fsyncs/s, $bpf batches per fsync" \
    "≥ 90% of interval ($(ratio "$al_mbps" "$int_mbps"))" "$(verdict "$al_mbps" "$(awk -v i="$int_mbps" 'BEGIN{print 0.9*i}')")" \
    "$(cpu_per_gb "$c0" "$c1" "$(j "$r" .Produced)")"

  log "$label: one producer, acks=all, fsync=always: round trip"
  r=$(PRODUCERS=1 bench --topic t4 --partitions 1 --records "$RTT_RECORDS" --acks all --sequential --consume=false)
  rtt_p99_us=$(j "$r" '.P99 / 1000 | round')
  row "$label one producer acks=all round trip, fsync=always (one record at a time)" \
    "p50 $(ms "$(j "$r" .P50)"), p99 $(ms "$(j "$r" .P99)")" \
    "p99 ≤ fdatasync p99 + 0.3 ms ($(awk -v f="$fs_p99" 'BEGIN { printf "%.2f ms", f/1000 + 0.3 }'))" \
    "$(verdict "$(awk -v f="$fs_p99" 'BEGIN{print f + 300}')" "$rtt_p99_us")"

  log "$label: p99 at 20 MB/s, fsync=always"
  c0=$(cpu_ticks)
  r=$(bench --topic t3 --records "$RATE_RECORDS" --acks all --rate 20 --consume=true)
  c1=$(cpu_ticks)
  p99_us=$(j "$r" '.P99 / 1000 | round')
  row "$label produce p99 at 20 MB/s offered, fsync=always" \
    "p50 $(ms "$(j "$r" .P50)"), p99 $(ms "$(j "$r" .P99)"), p99.9 $(ms "$(j "$r" .P999)"); e2e p99 $(ms "$(j "$r" .E2EP99)")" \
    "≤ 3× fdatasync p99 ($(awk -v p="$p99_us" -v f="$fs_p99" 'BEGIN { if (f > 0) printf "%.1f×", p/f; else print "n/a" }'))" \
    "$(verdict "$(awk -v f="$fs_p99" 'BEGIN{print 3*f}')" "$p99_us")" \
    "$(cpu_per_gb "$c0" "$c1" "$(j "$r" .Produced)") (incl. consume)"
  stop
done

# A topic at its retention.bytes limit: every roll drops the oldest segment.
# With storage.recycle-segments the roll overwrites that segment's file (its
# pages usually still cached); without, it creates a file (new page-cache
# pages) and the deleter frees the old one. First fill to the limit, then
# measure a second pass of the same size.
for recycle in true false; do
  log "retention steady state, recycle-segments=$recycle"
  start "tusk-retain-$recycle" "$TUSK" interval --storage-recycle-segments="$recycle" \
    --topic-segment-bytes $((RETAIN_SEG_MB << 20)) --topic-retention-bytes $((3 * RETAIN_SEG_MB << 20))
  bench --topic ret --records "$RETAIN_RECORDS" --acks 1 --consume=false >/dev/null
  c0=$(cpu_ticks)
  r=$(bench --topic ret --records "$RETAIN_RECORDS" --acks 1 --consume=false)
  c1=$(cpu_ticks)
  rec=$(metric tusk_storage_segments_recycled_total)
  eval "ret_cpu_$recycle=$(cpu_per_gb "$c0" "$c1" "$(j "$r" .Produced)")"
  row "produce acks=1 fsync=interval at retention.bytes ($RETAIN_SEG_MB MiB segments, $((3 * RETAIN_SEG_MB)) MiB kept per partition), recycle-segments=$recycle" \
    "$(j "$r" '.ProduceMBps | . * 10 | round / 10') MB/s, p99 $(ms "$(j "$r" .P99)"); $rec segments recycled" \
    "$(if [ "$recycle" = false ]; then echo "recycling on: $ret_cpu_true CPU-s/GB"; else echo "compare with recycling off"; fi)" "-" \
    "$(cpu_per_gb "$c0" "$c1" "$(j "$r" .Produced)")"
  stop
done

log "recovery: $RECOVERY_MB MiB across $RECOVERY_PARTITIONS partitions, kill -9"
start recovery "$TUSK" interval
recs=$(( RECOVERY_MB * 1024 ))
note "tusk bench --brokers ADDR --json --topic rec --partitions $RECOVERY_PARTITIONS --records $recs --record-size 1024 --acks 1 --consume=false --producers $PRODUCERS --linger 5ms"
"$TUSK" bench --brokers "$addr" --json --topic rec --partitions "$RECOVERY_PARTITIONS" --records "$recs" --record-size 1024 \
  --acks 1 --consume=false --producers "$PRODUCERS" --linger 5ms >/dev/null 2>>"$dir/bench.log"
sync
kill -KILL "$pid"; wait "$pid" 2>/dev/null || true; pid=""
size=$(du -sm "$dir/data" | cut -f1)
rm -f "$dir/ready.json"
note "kill -9 PID; tusk serve --data-dir $dir/data ... (same flags); time until the ready file appears"
t0=$(date +%s%N)
"$TUSK" serve --data-dir "$dir/data" --kafka-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  --ready-file "$dir/ready.json" --storage-fsync interval --log-level warn >>"$dir/server.log" 2>&1 &
pid=$!
wait_ready "$dir/ready.json"
t1=$(date +%s%N)
rec_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", (b-a)/1e9 }')
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$http/healthz")
row "recovery after kill -9: $size MiB on disk, $RECOVERY_PARTITIONS partitions" "$rec_s s to serving (/healthz $code)" \
  "< 5 s (target is for 10 GB; RECOVERY_MB=10240 measures that)" "$(verdict 5 "$rec_s")"
stop

log "$BIG_PARTITIONS partitions"
start big "$TUSK" interval
t0=$(date +%s%N)
note "tusk bench --brokers ADDR --json --topic big --partitions $BIG_PARTITIONS --records 1000 --record-size 1024 --acks 1 --producers 1"
r=$("$TUSK" bench --brokers "$addr" --json --topic big --partitions "$BIG_PARTITIONS" --records 1000 --record-size 1024 \
  --acks 1 --producers 1 --timeout 120s 2>>"$dir/bench.log")
t1=$(date +%s%N)
rss=$(awk '/VmRSS/ { printf "%.0f MiB", $2/1024 }' "/proc/$pid/status")
row "$BIG_PARTITIONS partitions on one node" "serves (produced $(j "$r" .Produced), consumed $(j "$r" .Consumed) in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", (b-a)/1e9}') s incl. topic creation); RSS $rss" "starts, serves, RSS reported" "met"
stop

total=$(( $(date +%s) - began ))
log "done in ${total}s; writing $OUT"
# Sections other tools write into OUT (bench/bgio.sh, bench/replication.sh,
# bench/compaction.sh, bench/tls.sh, bench/dropbehind.sh, tusk bench scale --results) sit between their own
# markers; keep them.
kept=""
if [ -f "$OUT" ]; then
  kept=$(awk '/^<!-- [a-z ]+:? begin/ { on = 1 }
    on { print }
    /^<!-- [a-z ]+:? end/ { on = 0; print "" }' "$OUT")
fi
{
  echo "# Tusk benchmark results"
  echo
  echo "Written by \`bench/compare.sh\`$( [ "$QUICK" = 1 ] && echo ' with QUICK=1 (smoke run: small sizes, not the reference figures)') on $(date -u +%Y-%m-%dT%H:%MZ) in ${total} s."
  echo "Single node, 1 KiB records, 6 partitions, $PRODUCERS producer clients on the same machine as the broker. MB = 2^20 bytes."
  echo
  echo "## Machine"
  echo
  echo "| | |"
  echo "|---|---|"
  echo "| CPU | $cpu, $(nproc) cores visible |"
  echo "| memory | $mem |"
  echo "| kernel | $(uname -sr) |"
  echo "| data dir | $fsline, rotational=$rot |"
  echo "| go | $(go version | cut -d' ' -f3-) |"
  echo "| load average at start | $load |"
  echo "| commit | $(git -C "$repo" rev-parse --short HEAD)$(tree_dirty "$repo" && echo ' (dirty)') |"
  echo
  echo "## Results"
  echo
  echo "Broker CPU-s/GB is the server process's user+system CPU time (/proc/PID/stat) during the run, per GiB of record values produced or consumed. The client shares the machine's cores, so this, not MB/s, is the lever for throughput, and it hardly depends on other load."
  echo
  echo "| measurement | result | broker CPU-s/GB | target / reference | verdict |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
  echo "## Commands"
  echo
  echo "ADDR is the server's Kafka address from its ready file; \`probe\` is \`go build ./bench/cmd/probe\`; kfake is \`go build ./compat-tests/internal/kfaketusk\` (kfake from the module cache behind tusk's \`serve\` flags); nullbroker is \`go build ./bench/cmd/nullbroker\`."
  echo
  echo '```'
  cat "$work/cmds.txt"
  echo '```'
  if [ -n "$kept" ]; then echo; echo "$kept"; fi
} >"$OUT"
if [ "${SKIP_BGIO:-0}" != 1 ] && [ "$QUICK" != 1 ]; then
  log "background I/O (bench/bgio.sh)"
  TUSK=$TUSK OUT=$OUT bench/bgio.sh >/dev/null
fi
if [ "${SKIP_DROPBEHIND:-0}" != 1 ] && [ "$QUICK" != 1 ]; then
  log "drop-behind (bench/dropbehind.sh)"
  TUSK=$TUSK OUT=$OUT bench/dropbehind.sh >/dev/null
fi
if [ "${SKIP_REPLICATION:-0}" != 1 ] && [ "$QUICK" != 1 ]; then
  log "replication (bench/replication.sh)"
  TUSK=$TUSK OUT=$OUT bench/replication.sh >/dev/null
fi
if [ "${SKIP_SCALE:-0}" != 1 ] && [ "$QUICK" != 1 ]; then
  log "cluster scale (tusk bench scale, bench/faults.sh)"
  scale_rows "$TUSK" "$OUT"
fi
cat "$OUT"
