#!/usr/bin/env bash
# bench/failover.sh: failover in bulk (docs/io-and-scale.md, "Scale").
# Three nodes on loopback; one topic of N partitions at replication factor
# 3 (or, with PER set, N/PER topics of PER partitions, the records going
# to the first one only); RECORDS records produced with acks=all; once the
# cluster is quiet (three live brokers, no fenced segment, twice 2 s
# apart) a node that is not the controller is killed with kill -9. Prints
# how long until the metadata dump shows none of its active segments, the
# controller's fence and failover log lines, and how many records a
# consumer reads back afterwards (all RECORDS: nothing acknowledged was
# lost). Only the processes this script started are killed.
#
# Env: TUSK (default: built from this tree), N (3000), PER, RECORDS (N),
#      SERVE_ARGS (extra arguments for every node's tusk serve, e.g.
#      "--raft-heartbeat-timeout 1s --raft-election-timeout 1s"),
#      DATA_ROOT, PROF=1 (14 s CPU profiles from the kill on: the
#      controller's in $DATA_ROOT/ctrl.pprof, the other survivor's in
#      $DATA_ROOT/node<id>.pprof).
set -eEuo pipefail
: "${N:=3000}" "${PER:=}" "${RECORDS:=$N}" "${PROF:=}" "${SERVE_ARGS:=}"
DATA_ROOT=${DATA_ROOT:-$(mktemp -d)}
if [ -z "${TUSK:-}" ]; then go build -o "$DATA_ROOT/tusk" ./cmd/tusk; TUSK=$DATA_ROOT/tusk; fi
dir=$DATA_ROOT/failover; rm -rf "$dir"; mkdir -p "$dir"
port() { echo $(( B + 10 * $1 + $2 )); }
for try in $(seq 50); do # a base none of whose 12 ports is in use
	B=$(( 20000 + RANDOM % 30000 )); used=$(ss -Htan | awk '{print $4}' | sed 's/.*://' | sort -u)
	clash=0; for n in 1 2 3; do for k in 2 3 4 5; do echo "$used" | grep -qx "$(port $n $k)" && clash=1; done; done
	[ $clash = 0 ] && break
done
voters="1=127.0.0.1:$(port 1 3),2=127.0.0.1:$(port 2 3),3=127.0.0.1:$(port 3 3)"
declare -A pids
cleanup() { for n in 1 2 3; do [ -n "${pids[$n]:-}" ] && kill -9 "${pids[$n]}" 2>/dev/null || true; done; }
trap cleanup EXIT
for n in 1 2 3; do
	mkdir -p "$dir/n$n"
	"$TUSK" serve --node-id $n --data-dir "$dir/n$n/data" --kafka-listen 127.0.0.1:"$(port $n 2)" --http-listen 127.0.0.1:"$(port $n 5)" \
		--raft-listen 127.0.0.1:"$(port $n 3)" --internal-listen 127.0.0.1:"$(port $n 4)" --voters "$voters" \
		--ready-file "$dir/n$n/ready.json" --log-level warn $SERVE_ARGS > "$dir/n$n/log" 2>&1 &
	pids[$n]=$!
done
for n in 1 2 3; do for i in $(seq 300); do [ -s "$dir/n$n/ready.json" ] && break; sleep 0.1; done; done
alive() { "$TUSK" cluster status --server 127.0.0.1:"$(port 1 4)" 2>/dev/null | jq '[.brokers[]|select(.state=="alive")]|length'; }
for i in $(seq 100); do [ "$(alive)" = 3 ] && break; sleep 0.2; done
# create makes the named topics, retrying (up to 20 times, 1 s apart) a
# request some of whose topics failed (a Raft election during creation
# fails them); topics that exist already count as created.
create() {
	local out
	for try in $(seq 20); do
		out=$("$TUSK" topic create "$@" --replication-factor 3 --brokers 127.0.0.1:"$(port 1 2)" --timeout 120s 2>&1) && { echo "$out" >> "$dir/create.log"; return 0; }
		echo "$out" >> "$dir/create.log"
		# Every failure named is TOPIC_ALREADY_EXISTS: done.
		echo "$out" | grep -q 'failed:' && ! echo "$out" | grep -oE '[A-Z][A-Z_]+: ' | grep -vq 'TOPIC_ALREADY_EXISTS: ' && return 0
		sleep 1
	done
	echo "create failed 20 times: $(echo "$out" | tail -c 300)"; return 1
}
t0=$(date +%s.%N)
if [ -z "$PER" ]; then
	create big --partitions "$N"
else
	create big --partitions "$PER"
	# Four requests of 200 topics in flight (the nodes are jobs too:
	# wait for the creates by their pids).
	creates=()
	for ((k = 1; k < N / PER; k += 200)); do
		create $(seq -f "t%g" $k $(( k + 199 < N / PER - 1 ? k + 199 : N / PER - 1 ))) --partitions "$PER" &
		creates+=($!)
		if [ "${#creates[@]}" -ge 4 ]; then wait "${creates[0]}"; creates=("${creates[@]:1}"); fi
	done
	for p in "${creates[@]}"; do wait "$p"; done
fi
echo "created $N partitions in $(echo "$(date +%s.%N) - $t0" | bc) s"
quiet() {
	[ "$(alive)" = 3 ] && [ "$("$TUSK" cluster dump --server 127.0.0.1:"$(port 1 4)" 2>/dev/null |
		jq '[.topics[].parts[].segments[-1]|select(.state=="fenced")]|length')" = 0 ]
}
settle() { for i in $(seq 120); do quiet && sleep 2 && quiet && return 0; sleep 1; done; echo "cluster not quiet"; exit 1; }
settle
"$TUSK" bench --brokers 127.0.0.1:"$(port 1 2)" --topic big --records "$RECORDS" --record-size 100 --producers 1 --acks all \
	--consume=false --timeout 60s > "$dir/bench.out" 2> "$dir/bench.log"
echo "produced $RECORDS records acks=all"
settle
# The controller as all three nodes see it (one node's answer can be stale
# right after an election: a 30,000-partition run once killed the Raft
# leader, thinking it was not).
controller() {
	local a b c
	for i in $(seq 50); do
		a=$("$TUSK" cluster status --server 127.0.0.1:"$(port 1 4)" 2>/dev/null | jq .leader)
		b=$("$TUSK" cluster status --server 127.0.0.1:"$(port 2 4)" 2>/dev/null | jq .leader)
		c=$("$TUSK" cluster status --server 127.0.0.1:"$(port 3 4)" 2>/dev/null | jq .leader)
		[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ] && [ "$a" != 0 ] && [ "$a" != null ] && { echo "$a"; return 0; }
		sleep 0.2
	done
	echo "no agreed controller" >&2; exit 1
}
ctrl=$(controller)
D=2; [ "$ctrl" = 2 ] && D=3
echo "controller $ctrl, killing node $D (load $(cut -d' ' -f1-3 /proc/loadavg))"
led() {
	"$TUSK" cluster dump --server 127.0.0.1:"$(port "$ctrl" 4)" 2>/dev/null |
		jq "[.topics[] | select((.rf // 3) > 1) | .parts[] | .segments[-1] | select(.leader == $D)] | length"
}
before=$(led)
echo "node $D leads $before active segments"
if [ -n "$PROF" ]; then
	curl -s -o "$DATA_ROOT/ctrl.pprof" "http://127.0.0.1:$(port "$ctrl" 5)/debug/pprof/profile?seconds=14" & cp=$!
	O=$(( 6 - ctrl - D ))
	curl -s -o "$DATA_ROOT/node$O.pprof" "http://127.0.0.1:$(port "$O" 5)/debug/pprof/profile?seconds=14" & op=$!
	sleep 0.3
fi
kill -9 "${pids[$D]}"; t2=$(date +%s.%N); pids[$D]=
echo "killed at $(date -u +%H:%M:%S.%N)"
# The time is read from the controller's log: each failover pass logs the
# partitions whose segments it sealed (with new leaders) once the seals
# committed; all moved when those add up to what node D led. Polling the
# metadata dump instead cost the controller seconds of CPU per poll at
# 30,000 partitions (and a poll took 5 s). One dump afterwards checks it.
moved=
for i in $(seq 1200); do
	moved=$(sed 's/\x1b\[[0-9;]*m//g' "$dir/n$ctrl/log" | awk -v want="$before" '
		/failover: segments sealed/ { for (f = 1; f <= NF; f++) if ($f ~ /^partitions=/) { split($f, kv, "="); n += kv[2] }; if (n >= want) { print $1; exit } }')
	[ -n "$moved" ] && break
	sleep 0.1
done
[ -n "$moved" ] || { echo "not all moved within 120 s"; exit 1; }
echo "all moved after $(echo "$(date -d "$moved" +%s.%N) - $t2" | bc) s (controller log, $moved)"
for i in $(seq 60); do [ "$(led)" = 0 ] && break; sleep 1; done
echo "node $D leads $(led) active segments now"
[ -n "$PROF" ] && wait $cp $op
sed 's/\x1b\[[0-9;]*m//g' "$dir/n$ctrl/log" | grep -h "broker fenced\|failover" | cut -c1-400 | head -5 || true
for n in 1 2 3; do [ "$n" = "$D" ] && continue
	echo "node $n: Raft step-downs $(grep -c 'stepping down' "$dir/n$n/log"), elections started $(grep -c 'starting election' "$dir/n$n/log") (whole run)"
done
S=1; [ "$D" = 1 ] && S=3
"$TUSK" bench --brokers 127.0.0.1:"$(port $S 2)" --topic big --consume-only --json --timeout 60s > "$dir/consume.json" 2> "$dir/consume.log" || true
echo "consumed back $(jq .Consumed "$dir/consume.json" 2>/dev/null) of $RECORDS records"
