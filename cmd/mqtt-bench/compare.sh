#!/usr/bin/env bash
# Runs the same scenarios against the reference brokers (Mosquitto, NATS
# Server's MQTT listener with JetStream in a temporary folder, Mochi) and
# this broker (default scripts, and a "busy" variant whose onMqPublish
# does an ACL check and a shared counter increment per message),
# alternating them, and prints the medians, this broker against the best
# peer per row, and the Lua variant's cost. Everything listens on
# 127.0.0.1 only.
#
#   cmd/mqtt-bench/compare.sh [ROUNDS] [SECONDS]
#
# Environment:
#   BASE=REV       also run the broker built from git revision REV (default
#                  scripts) in the same rounds; a column gives this broker
#                  against it: the before/after of a change, in one run.
#   PEERS="mosq nats mochi"   the reference brokers to run (any subset;
#                  nats and mochi are built from the Go module proxy).
#   SIZES="64 1024 16384"     payload sizes of the throughput scenarios.
#   ONLY=REGEX     run only the rows whose name matches (grep -E).
#   CPUS=LIST      pin this broker (and busy, base) to these CPUs with
#                  taskset (e.g. CPUS=0 for one core); peers are not pinned.
#
# Needs mosquitto (apt-get install -y mosquitto) and Go.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-3}
PEERS=${PEERS:-mosq nats mochi}
SIZES=${SIZES:-64 1024 16384}
ONLY=${ONLY:-.}
NATS_VERSION=v2.15.2
MOCHI_VERSION=v2.7.9
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${BASE:-}" ]; then git worktree remove --force "$work/base-src" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/broker" ./cmd/broker
go build -o "$work/mqtt-bench" ./cmd/mqtt-bench
pin=()
if [ -n "${CPUS:-}" ]; then pin=(taskset -c "$CPUS"); fi

declare -A port pid
next_port=18901
start() { # name command... (the command listens on ${port[name]})
  local name=$1; shift
  "$@" > "$work/$name.log" 2>&1 &
  pids+=($!)
  pid[$name]=$!
}
for p in $PEERS; do port[$p]=$((next_port++)); done
port[ours]=$((next_port++)); port[busy]=$((next_port++)); port[base]=$((next_port++))

for p in $PEERS; do
  case $p in
  mosq)
    printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "${port[mosq]}" > "$work/mosquitto.conf"
    start mosq mosquitto -c "$work/mosquitto.conf" ;;
  nats)
    GOBIN="$work/bin" GOFLAGS=-mod=mod go install "github.com/nats-io/nats-server/v2@$NATS_VERSION"
    mkdir "$work/jetstream"
    cat > "$work/nats.conf" <<EOF
listen: 127.0.0.1:-1
server_name: bench
jetstream { store_dir: "$work/jetstream" }
mqtt { listen: 127.0.0.1:${port[nats]} }
EOF
    start nats "$work/bin/nats-server" -c "$work/nats.conf" ;;
  mochi)
    # Mochi's own command (TCP, plus a WebSocket and a stats listener we
    # move off their default ports), which allows every client.
    GOBIN="$work/bin" GOFLAGS=-mod=mod go install "github.com/mochi-mqtt/server/v2/cmd@$MOCHI_VERSION"
    start mochi "$work/bin/cmd" -tcp "127.0.0.1:${port[mochi]}" -ws "127.0.0.1:$((next_port++))" -info "127.0.0.1:$((next_port++))" ;;
  *) echo "compare.sh: unknown peer $p (mosq, nats, mochi)" >&2; exit 2 ;;
  esac
done
targets="$PEERS ours busy"

start ours "${pin[@]}" "$work/broker" --scripts ./scripts --listen "127.0.0.1:${port[ours]}" --data-dir= --log-level warn
# The busy variant: every PUBLISH goes through an ACL rule check and a
# shared counter.
mkdir "$work/busy"
cp scripts/main.lua scripts/auth.lua scripts/acl.lua "$work/busy/"
sed -i 's|^acl.rules = {|acl.rules = {\n  { action = "deny", topic = "secret/#" },\n  { action = "allow", topic = "bench/#" },|' "$work/busy/acl.lua"
sed -i 's|^  route(fd, data)|  shared.incr("published:" .. data.topic, 1)\n  route(fd, data)|' "$work/busy/main.lua"
start busy "${pin[@]}" "$work/broker" --scripts "$work/busy" --lualib ./lualib --listen "127.0.0.1:${port[busy]}" --data-dir= --log-level warn
if [ -n "${BASE:-}" ]; then
  git worktree add --detach -q "$work/base-src" "$BASE"
  (cd "$work/base-src" && go build -o "$work/base-broker" ./cmd/broker)
  # An old revision may not know --data-dir; it then keeps nothing anyway.
  data=(--data-dir=)
  "$work/base-broker" --help 2>&1 | grep -q -- --data-dir || data=()
  start base "${pin[@]}" "$work/base-broker" --scripts "$work/base-src/scripts" --listen "127.0.0.1:${port[base]}" "${data[@]}" --log-level warn
  targets="$targets base"
fi
sleep 2
for t in $targets; do
  if ! kill -0 "${pid[$t]}" 2>/dev/null; then echo "compare.sh: $t did not start:" >&2; cat "$work/$t.log" >&2; exit 1; fi
done

bench() { "$work/mqtt-bench" --duration "${SECS}s" "$@"; }
field() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)]; else print "-" }'; }
sum() { echo "$1" | tr ' ' '\n' | awk '{ s += $1 } END { print s + 0 }'; }

declare -A results
rows=()
run() { # name metric args...
  local name=$1 metric=$2; shift 2
  echo "$name" | grep -qE -- "$ONLY" || return 0
  rows+=("$name")
  for ((r = 1; r <= ROUNDS; r++)); do
    # Each round starts with the next target, so that no broker always
    # runs right after the same one.
    local order=($targets) rotated=() k n
    n=${#order[@]}
    for ((k = 0; k < n; k++)); do rotated+=("${order[$(((k + r) % n))]}"); done
    for target in "${rotated[@]}"; do
      out=$(bench --addr "127.0.0.1:${port[$target]}" --pid "${pid[$target]}" "$@" 2>&1) || out="failed"
      results[$name,$target]+="$(echo "$out" | field "$metric") "
      results[$name,$target,cpu]+="$(echo "$out" | field cpu_us_per_conn) "
      results[$name,$target,lost]+="$(echo "$out" | field lost) "
      results[$name,$target,dup]+="$(echo "$out" | field dup) "
    done
  done
}

for size in $SIZES; do
  for qos in 0 1; do
    run "fan-in QoS $qos, $size B (msgs/s)"  rate --scenario fanin --qos $qos --size "$size" --publishers 8
    run "fan-out QoS $qos, $size B (msgs/s)" rate --scenario fanout --qos $qos --size "$size" --subscribers 16
    run "pairs QoS $qos, $size B (msgs/s)"   rate --scenario pairs --qos $qos --size "$size" --pairs 16
  done
done
for qos in 0 1; do
  run "latency QoS $qos p50 (us)" p50_us --scenario latency --qos $qos --rate 10000 --publishers 8
  run "latency QoS $qos p99 (us)" p99_us --scenario latency --qos $qos --rate 10000 --publishers 8
done
run "connects, 2 at once (conn/s)"  rate --scenario connect --connectors 2
run "connects, 32 at once (conn/s)" rate --scenario connect --connectors 32

# One row: the medians, this broker against the best peer (above 1 is
# better: rate over the best rate, or the best latency over this one's),
# the Lua variant's cost, losses and duplicates per target.
header="$(printf '%-34s' scenario)"
for t in $PEERS; do header+="$(printf ' %11s' "$t")"; done
header+="$(printf ' %11s %8s %11s %8s' broker "vs best" broker+lua "lua")"
[ -n "${BASE:-}" ] && header+="$(printf ' %11s %8s' base "vs base")"
echo "$header   lost/dup"
for name in "${rows[@]}"; do
  lower=0
  [[ $name == latency* ]] && lower=1
  line="$(printf '%-34s' "$name")"
  best=""
  for t in $PEERS; do
    v=$(echo ${results[$name,$t]} | tr ' ' '\n' | grep -E '^[0-9.]+$' | median)
    line+="$(printf ' %11s' "$v")"
    [ "$v" = "-" ] && continue
    best=$(awk -v b="$best" -v v="$v" -v lo=$lower 'BEGIN { if (b == "" || (lo && v < b) || (!lo && v > b)) print v; else print b }')
  done
  o=$(echo ${results[$name,ours]} | tr ' ' '\n' | grep -E '^[0-9.]+$' | median)
  b=$(echo ${results[$name,busy]} | tr ' ' '\n' | grep -E '^[0-9.]+$' | median)
  ratio() { awk -v o="$1" -v p="$2" -v lo=$lower 'BEGIN { if (o == "-" || p == "-" || p == "" || o == 0 || p == 0) print "-"; else if (lo) printf "%.2fx", p / o; else printf "%.2fx", o / p }'; }
  # The variant's value against the default's: for a rate below 0 is a
  # cost, for a latency above 0.
  cost=$(awk -v o="$o" -v b="$b" 'BEGIN { if (o == "-" || b == "-" || o == 0) print "-"; else printf "%+.0f%%", (b / o - 1) * 100 }')
  line+="$(printf ' %11s %8s %11s %8s' "$o" "$(ratio "$o" "$best")" "$b" "$cost")"
  if [ -n "${BASE:-}" ]; then
    a=$(echo ${results[$name,base]} | tr ' ' '\n' | grep -E '^[0-9.]+$' | median)
    line+="$(printf ' %11s %8s' "$a" "$(ratio "$o" "$a")")"
  fi
  loss=""
  for t in $targets; do loss+=" $t $(sum "${results[$name,$t,lost]}")/$(sum "${results[$name,$t,dup]}")"; done
  echo "$line  $loss"
done

# The broker's CPU time per connection in the connect scenario: steadier
# than the rate, which also depends on the CPU the load generator leaves.
for name in "connects, 2 at once (conn/s)" "connects, 32 at once (conn/s)"; do
  echo "$name" | grep -qE -- "$ONLY" || continue
  line="$(printf '%-34s' "CPU us/conn, ${name%% (*}")"
  for t in $PEERS ours busy; do line+="$(printf ' %s %s' "$t" "$(echo ${results[$name,$t,cpu]} | tr ' ' '\n' | grep -E '^[0-9.]+$' | median)")"; done
  echo "$line"
done

# Idle memory: 10k connections each, broker RSS growth per connection.
if echo "idle memory" | grep -qE -- "$ONLY"; then
  for t in $PEERS ours; do
    out=$("$work/mqtt-bench" --addr "127.0.0.1:${port[$t]}" --scenario idle --conns 10000 --pid "${pid[$t]}" 2>&1) || out=""
    printf 'idle memory %-6s %s KB per connection\n' "$t" "$(echo "$out" | field kb_per_conn)"
  done
fi
