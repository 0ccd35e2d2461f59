#!/usr/bin/env bash
# bench/faults.sh: the cluster-scale fault rows of issue 16 (docs/io-and-scale.md,
# section 3), each beside its target, written as the "faults" section of
# bench/RESULTS.md:
#   failover: bench/failover.sh with N partitions (default 30,000: 10,000
#     topics of 3, RF=3, so the killed node leads about 10,000 segments);
#     target: all its leaderships moved in ≤ 10 s, every acknowledged
#     record read back afterwards;
#   rolling restart: the compat scenario TestClusterRollingRestartManyPartitions
#     (3 nodes, a kgo producer writing to ROLLING partitions with acks=all
#     while each node in turn is stopped with SIGTERM and started again;
#     every acknowledged record read back in order); target: nothing lost.
# Run alone, or from bench/compare.sh (SECTIONS=faults bench/compare.sh runs
# only this; a full compare.sh run includes it unless SKIP_SCALE=1).
#
# Env: TUSK=path   tusk binary (default: built from this tree)
#      N=30000     partitions of the failover run (PER=3 per topic)
#      FAILOVERS=1 failover runs (each its own cluster; every run is listed)
#      ROLLING=1000 partitions of the rolling restart
#      OUT=bench/RESULTS.md ("-": print the section only)
# Needs: go, jq, bc, ss.
set -eEuo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/section.sh
. bench/section.sh
: "${N:=30000}" "${FAILOVERS:=1}" "${ROLLING:=1000}" "${OUT:=bench/RESULTS.md}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
began=$(date +%s)
log() { echo "faults: $(( $(date +%s) - began ))s $*" >&2; }
load0=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -z "${TUSK:-}" ]; then
	log "building"
	go build -o "$work/tusk" ./cmd/tusk
	TUSK=$work/tusk
fi
TUSK=$(realpath "$TUSK")

rows=()
for i in $(seq "$FAILOVERS"); do
	log "failover run $i of $FAILOVERS ($N partitions)"
	out=$work/failover-$i.txt
	rc=0
	TUSK=$TUSK N=$N PER=3 DATA_ROOT=$work/f$i bench/failover.sh >"$out" 2>&1 || rc=$?
	created=$(sed -n 's/^created [0-9]* partitions in \([0-9.]*\) s$/\1/p' "$out")
	led=$(sed -n 's/^node [0-9]* leads \([0-9]*\) active segments$/\1/p' "$out" | head -1)
	killload=$(sed -n 's/.*killing node [0-9]* (load \([0-9. ]*\)).*/\1/p' "$out")
	moved=$(sed -n 's/^all moved after \([0-9.]*\) s.*/\1/p' "$out")
	back=$(sed -n 's/^consumed back \([0-9a-z]*\) of \([0-9]*\) records$/\1/p' "$out")
	want=$(sed -n 's/^consumed back \([0-9a-z]*\) of \([0-9]*\) records$/\2/p' "$out")
	downs=$(grep -o 'Raft step-downs [0-9]*' "$out" | awk '{ s += $3 } END { print s + 0 }')
	if [ "$rc" != 0 ] || [ -z "$moved" ]; then
		rows+=("| kill -9 of a node leading ${led:-?} segments ($N partitions, RF=3) | run $i failed: $(tail -n 1 "$out" | cut -c1-200) | ≤ 10 s, nothing lost | **missed** |")
		continue
	fi
	moved=$(printf '%.2f' "$moved"); created=$(printf '%.1f' "$created")
	verdict=met
	awk -v m="$moved" 'BEGIN { exit !(m <= 10) }' || verdict='**missed**'
	[ "$back" = "$want" ] || verdict='**missed**'
	rows+=("| kill -9 of a node leading $led segments ($N partitions in $((N / 3)) topics, RF=3), run $i | all $led moved in $moved s (load $killload at the kill; $downs Raft step-downs on the survivors over the run); $back of $want acknowledged records read back; created in $created s | ≤ 10 s, nothing lost | $verdict |")
done

log "rolling restart ($ROLLING partitions)"
rolling=$work/rolling.txt
rc=0
TUSK_BIN=$TUSK TUSK_LONG_FAULTS=1 TUSK_ROLLING_PARTITIONS=$ROLLING \
	go test -count=1 -v -timeout 15m -run '^TestClusterRollingRestartManyPartitions$' ./compat-tests/ >"$rolling" 2>&1 || rc=$?
measure=$(grep -o 'measure: [0-9]* rounds, [0-9]* acknowledged records, [0-9]* failed produces' "$rolling" | tail -1 | sed 's/^measure: //')
restarts=$(grep -o 'node [0-9]* stopped and serving again after [0-9.]*[a-z]*' "$rolling" | sed 's/ stopped and serving again after / /' | awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1 " " $2, $3 }')
if [ "$rc" = 0 ] && grep -q -- '--- PASS: TestClusterRollingRestartManyPartitions' "$rolling"; then
	rows+=("| rolling restart (SIGTERM, start) of all three nodes while a kgo producer writes to $ROLLING partitions (RF=3, acks=all) | passed: $measure; every acknowledged record read back at its offset; restarts: $restarts | nothing acknowledged lost | met |")
else
	rows+=("| rolling restart of all three nodes while a producer writes to $ROLLING partitions | failed: $(grep -m1 -E -- '--- FAIL|panic:|_test.go:[0-9]+: ' "$rolling" | cut -c1-300) | nothing acknowledged lost | **missed** |")
fi

load1=$(cut -d' ' -f1-3 /proc/loadavg)
section=$(
	echo "<!-- faults begin -->"
	echo "## Failover and rolling restart at scale"
	echo
	echo "Written by \`bench/faults.sh\` (N=$N, FAILOVERS=$FAILOVERS, ROLLING=$ROLLING) on $(date -u +%Y-%m-%dT%H:%MZ) in $(( $(date +%s) - began )) s (commit $(git rev-parse --short HEAD)$(tree_dirty . && echo ', dirty'); load average $load0 at the start, $load1 at the end; three nodes sharing this machine's two cores). Failover time is from the kill -9 until the controller's log has sealed every segment the node led (its \"failover: segments sealed\" lines add up), then a consumer reads the topic back; the Raft step-downs show whether the machine starved the controller."
	echo
	echo "| row | result | target | verdict |"
	echo "|---|---|---|---|"
	printf '%s\n' "${rows[@]}"
	echo
	echo '```'
	echo "N=$N PER=3 bench/failover.sh   # $FAILOVERS run(s)"
	echo "TUSK_LONG_FAULTS=1 TUSK_ROLLING_PARTITIONS=$ROLLING go test -count=1 -v -run '^TestClusterRollingRestartManyPartitions\$' ./compat-tests/"
	echo '```'
	echo "<!-- faults end -->"
)
write_section faults "$section" "$OUT"
