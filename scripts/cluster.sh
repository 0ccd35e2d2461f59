#!/usr/bin/env bash
# Start a 3-node Tusk cluster on loopback (`make cluster`): node N runs with
# configs/cluster-nodeN.yaml, keeps its data in ./tusk-cluster/nodeN and logs
# to ./tusk-cluster/nodeN.log. Prints each node's Kafka address once all
# three serve; Ctrl-C or SIGTERM stops all three (SIGTERM, graceful). If one
# node exits by itself, the others are stopped too.
# Env: BIN=path to the tusk binary (default bin/tusk, built if missing);
# SECURE=1 (`make cluster-secure`) runs configs/secure-cluster-nodeN.yaml
# instead, in ./tusk-cluster-secure: SASL_SSL clients, ACLs, node-to-node
# mutual TLS; the CA and certificates (`tusk certs`) and the admin user's
# users.txt are written there on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin/tusk}
[ -x "$BIN" ] || go build -o "$BIN" ./cmd/tusk
DIR=tusk-cluster
CONF=cluster-node
STATUS_SERVER=127.0.0.1:9194
STATUS_FLAGS=""
if [ "${SECURE:-0}" = 1 ]; then
  DIR=tusk-cluster-secure
  CONF=secure-cluster-node
  STATUS_SERVER=127.0.0.1:10194
  STATUS_FLAGS=" --tls-cert-file $DIR/certs/node1.crt --tls-key-file $DIR/certs/node1.key --tls-ca-file $DIR/certs/ca.crt"
  if [ ! -s "$DIR/certs/ca.crt" ]; then
    "$BIN" certs --dir "$DIR/certs" --nodes 1,2,3 --ips 127.0.0.1,::1 --clients admin >/dev/null
    echo "wrote a throwaway CA and node certificates to $DIR/certs" >&2
  fi
  if [ ! -s "$DIR/users.txt" ]; then
    (umask 077 && printf 'admin:%s\n' "$(head -c 18 /dev/urandom | base64 | tr -d '/+=')" >"$DIR/users.txt")
    echo "wrote the bootstrap user admin (a super user) to $DIR/users.txt" >&2
  fi
fi
mkdir -p "$DIR"

pids=()
stopping=0
stop_all() {
  [ "$stopping" = 1 ] && return
  stopping=1
  echo "stopping tusk cluster..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  rc=0
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || rc=$?; done
  return "$rc"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

for i in 1 2 3; do
  rm -f "$DIR/node$i.ready.json"
  # Ctrl-C also reaches the nodes (same process group); tusk treats
  # SIGINT like SIGTERM, a graceful stop.
  "$BIN" serve --config "configs/$CONF$i.yaml" \
    --ready-file "$DIR/node$i.ready.json" >"$DIR/node$i.log" 2>&1 &
  pids+=("$!")
done

# The ready file is written once a node serves Kafka.
for i in 1 2 3; do
  pid=${pids[$((i - 1))]}
  for _ in $(seq 1 300); do
    [ -s "$DIR/node$i.ready.json" ] && break
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "node $i exited during start; tail of $DIR/node$i.log:" >&2
      tail -n 20 "$DIR/node$i.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  if [ ! -s "$DIR/node$i.ready.json" ]; then
    echo "node $i not ready after 30 s; see $DIR/node$i.log" >&2
    exit 1
  fi
done

addrs=()
for i in 1 2 3; do
  f="$DIR/node$i.ready.json"
  kafka=$(sed -E 's/.*"kafka":"([^"]+)".*/\1/' "$f")
  internal=$(sed -nE 's/.*"internal":"([^"]+)".*/\1/p' "$f")
  addrs+=("$kafka")
  echo "node $i: kafka $kafka  internal ${internal:-?}  data $DIR/node$i  log $DIR/node$i.log"
done
bootstrap=$(IFS=,; echo "${addrs[*]}")
echo "bootstrap servers: $bootstrap"
http=$(sed -nE 's/.*"http":"([^"]+)".*/\1/p' "$DIR/node1.ready.json")
if [ -n "$http" ]; then
  if [ "${SECURE:-0}" = 1 ]; then
    echo "web console: http://$http/ui/?token=<http.admin-token of configs/${CONF}1.yaml>"
  else
    echo "web console: http://$http/ui"
  fi
fi
echo "status: $BIN cluster status --server $STATUS_SERVER$STATUS_FLAGS    (Ctrl-C stops the cluster)"
if [ "${SECURE:-0}" = 1 ]; then
  echo "clients: SASL_SSL with the CA $DIR/certs/ca.crt, user admin (a super user), password in $DIR/users.txt, e.g."
  echo "  TUSK_BROKERS=$bootstrap TUSK_CLI_SASL_USER=admin TUSK_CLI_SASL_PASSWORD=\$(cut -d: -f2 $DIR/users.txt) $BIN topic list --tls-ca $DIR/certs/ca.crt --sasl-mechanism SCRAM-SHA-512"
fi

# Run until interrupted, or until any node exits on its own.
set +e
wait -n "${pids[@]}"
rc=$?
echo "a tusk node exited (status $rc); stopping the others" >&2
exit 1
