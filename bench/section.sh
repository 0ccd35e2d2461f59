# bench/section.sh: sourced by the bench scripts that write their own
# section of bench/RESULTS.md between "<!-- NAME begin -->" and
# "<!-- NAME end -->" markers (bench/compare.sh keeps such sections when
# it rewrites the file).
#
# write_section NAME SECTION OUT: prints SECTION (which carries its own
# markers); unless OUT is "-", also puts it into OUT, replacing the
# previous NAME section or appending it.
write_section() {
  local name=$1 section=$2 out=$3 tmp
  echo "$section"
  [ "$out" = - ] && return 0
  touch "$out"
  tmp=$(mktemp -d)
  echo "$section" >"$tmp/section.md"
  if grep -q "<!-- $name begin -->" "$out"; then
    awk -v repl="$tmp/section.md" -v b="<!-- $name begin -->" -v e="<!-- $name end -->" '
      $0 == b { while ((getline l < repl) > 0) print l; skip = 1; next }
      $0 == e { skip = 0; next }
      !skip { print }' "$out" >"$tmp/out.md"
    cp "$tmp/out.md" "$out"
  else
    { echo; echo "$section"; } >>"$out"
  fi
  rm -rf "$tmp"
}

# tree_dirty REPO: whether REPO's tree differs from its HEAD, apart from
# bench/RESULTS.md (which the scripts themselves are writing).
tree_dirty() { ! git -C "$1" diff --quiet -- . ':(exclude)bench/RESULTS.md'; }

# wait_alive TUSK INTERNAL_ADDR N: waits up to about a minute until the
# cluster status from INTERNAL_ADDR lists N live brokers; fails (status
# printed) if it does not.
wait_alive() {
  local alive=0
  for _ in $(seq 1 300); do
    alive=$("$1" cluster status --server "$2" --timeout 2s 2>/dev/null | jq '[.brokers[]? | select(.state == "alive")] | length' 2>/dev/null || echo 0)
    [ "$alive" = "$3" ] && return 0
    sleep 0.2
  done
  echo "the cluster did not reach $3 live brokers" >&2
  "$1" cluster status --server "$2" >&2 || true
  return 1
}
