#!/usr/bin/env bash
# Runs the same scenarios against Mosquitto and this broker (default
# scripts, and a "busy" variant whose onMqPublish does an ACL check and a
# shared counter increment per message), alternating them, and prints the
# medians and the ratios. Everything listens on 127.0.0.1 only.
#
#   cmd/mqtt-bench/compare.sh [ROUNDS] [SECONDS]
#   BASE=REV cmd/mqtt-bench/compare.sh [ROUNDS] [SECONDS]
#
# With BASE, the broker built from git revision REV (default scripts) runs
# too, in the same rounds, and a column gives this broker against it:
# the before/after of a change, measured in one run.
#
# Needs mosquitto (apt-get install -y mosquitto) and Go.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROUNDS=${1:-3}
SECS=${2:-3}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

go build -o "$work/broker" ./cmd/broker
go build -o "$work/mqtt-bench" ./cmd/mqtt-bench

MOSQ=18901 OURS=18902 BUSY=18903 BASEPORT=18904
targets="mosq ours busy"
if [ -n "${BASE:-}" ]; then
  git worktree add --detach -q "$work/base-src" "$BASE"
  (cd "$work/base-src" && go build -o "$work/base-broker" ./cmd/broker)
  cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; git worktree remove --force "$work/base-src" 2>/dev/null || true; rm -rf "$work"; }
  "$work/base-broker" --scripts "$work/base-src/scripts" --listen "127.0.0.1:$BASEPORT" --log-level warn > "$work/base.log" 2>&1 & pids+=($!); base_pid=$!
  targets="mosq ours busy base"
fi
printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$MOSQ" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 & pids+=($!); mosq_pid=$!

"$work/broker" --scripts ./scripts --listen "127.0.0.1:$OURS" --data-dir= --log-level warn > "$work/ours.log" 2>&1 & pids+=($!); ours_pid=$!

# The busy variant: every PUBLISH goes through an ACL rule check and a
# shared counter.
mkdir "$work/busy"
cp scripts/main.lua scripts/auth.lua scripts/acl.lua "$work/busy/"
sed -i 's|^acl.rules = {|acl.rules = {\n  { action = "deny", topic = "secret/#" },\n  { action = "allow", topic = "bench/#" },|' "$work/busy/acl.lua"
sed -i 's|^  route(fd, data)|  shared.incr("published:" .. data.topic, 1)\n  route(fd, data)|' "$work/busy/main.lua"
"$work/broker" --scripts "$work/busy" --lualib ./lualib --listen "127.0.0.1:$BUSY" --data-dir= --log-level warn > "$work/busy.log" 2>&1 & pids+=($!); busy_pid=$!
sleep 1

bench() { "$work/mqtt-bench" --duration "${SECS}s" "$@"; }
field() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
sum() { echo "$1" | tr ' ' '\n' | awk '{ s += $1 } END { print s + 0 }'; }

declare -A results
run() { # name metric args...
  local name=$1 metric=$2; shift 2
  for ((r = 1; r <= ROUNDS; r++)); do
    # Each round starts with the next target, so that no broker always
    # runs right after the same one.
    local order=($targets) rotated=() k n=$(echo $targets | wc -w)
    for ((k = 0; k < n; k++)); do rotated+=("${order[$(((k + r) % n))]}"); done
    for target in "${rotated[@]}"; do
      case $target in mosq) port=$MOSQ pid=$mosq_pid ;; ours) port=$OURS pid=$ours_pid ;; busy) port=$BUSY pid=$busy_pid ;; base) port=$BASEPORT pid=$base_pid ;; esac
      out=$(bench --addr "127.0.0.1:$port" --pid "$pid" "$@")
      results[$name,$target]+="$(echo "$out" | field "$metric") "
      results[$name,$target,cpu]+="$(echo "$out" | field cpu_us_per_conn) "
      results[$name,$target,lost]+="$(echo "$out" | field lost) "
      results[$name,$target,dup]+="$(echo "$out" | field dup) "
    done
  done
}

run "fan-in QoS 0 (msgs/s)"     rate   --scenario fanin --qos 0
run "fan-out QoS 0 (msgs/s)"    rate   --scenario fanout --qos 0
run "fan-out QoS 1 (msgs/s)"    rate   --scenario fanout --qos 1
run "pairs QoS 1 (msgs/s)"      rate   --scenario pairs --qos 1
run "latency p50 (us)"          p50_us --scenario latency --qos 1 --rate 10000
run "latency p99 (us)"          p99_us --scenario latency --qos 1 --rate 10000
run "connect rate (conn/s)"     rate   --scenario connect

printf '%-26s %14s %14s %8s %14s %10s  %s\n' scenario mosquitto broker ratio "broker+lua" "lua cost" "lost/dup (mosquitto | broker | broker+lua)$([ -n "${BASE:-}" ] && echo "   base: broker vs $BASE")"
for name in "fan-in QoS 0 (msgs/s)" "fan-out QoS 0 (msgs/s)" "fan-out QoS 1 (msgs/s)" "pairs QoS 1 (msgs/s)" "latency p50 (us)" "latency p99 (us)" "connect rate (conn/s)"; do
  m=$(echo ${results[$name,mosq]} | tr ' ' '\n' | median)
  o=$(echo ${results[$name,ours]} | tr ' ' '\n' | median)
  b=$(echo ${results[$name,busy]} | tr ' ' '\n' | median)
  ratio=$(awk -v o="$o" -v m="$m" 'BEGIN { printf "%.2fx", o / m }')
  cost=$(awk -v o="$o" -v b="$b" -v n="$name" 'BEGIN { if (n ~ /latency/) printf "%+.0f%%", (b / o - 1) * 100; else printf "%+.0f%%", (1 - b / o) * -100 }')
  loss="$(sum "${results[$name,mosq,lost]}")/$(sum "${results[$name,mosq,dup]}") | $(sum "${results[$name,ours,lost]}")/$(sum "${results[$name,ours,dup]}") | $(sum "${results[$name,busy,lost]}")/$(sum "${results[$name,busy,dup]}")"
  vs=""
  if [ -n "${BASE:-}" ]; then
    a=$(echo ${results[$name,base]} | tr ' ' '\n' | median)
    # Throughput: this broker / base; latency: base / this broker (above 1 is better either way).
    vs=$(awk -v o="$o" -v a="$a" -v n="$name" 'BEGIN { if (n ~ /latency/) printf "%.0f %.2fx", a, a / o; else printf "%.0f %.2fx", a, o / a }')
    loss="$loss | $(sum "${results[$name,base,lost]}")/$(sum "${results[$name,base,dup]}")"
  fi
  printf '%-26s %14s %14s %8s %14s %10s  %s   %s\n' "$name" "$m" "$o" "$ratio" "$b" "$cost" "$loss" "$vs"
done
# The broker's CPU time per connection in the connect scenario: steadier
# than the rate, which also depends on the CPU the load generator leaves.
name="connect rate (conn/s)"
m=$(echo ${results[$name,mosq,cpu]} | tr ' ' '\n' | median)
o=$(echo ${results[$name,ours,cpu]} | tr ' ' '\n' | median)
b=$(echo ${results[$name,busy,cpu]} | tr ' ' '\n' | median)
printf '%-26s %14s %14s %8s %14s\n' "connect CPU (us/conn)" "$m" "$o" "$(awk -v o="$o" -v m="$m" 'BEGIN { printf "%.2fx", o / m }')" "$b"

# Idle memory: 10k connections each, broker RSS growth per connection.
for target in mosq ours; do
  case $target in mosq) port=$MOSQ pid=$mosq_pid ;; ours) port=$OURS pid=$ours_pid ;; esac
  out=$("$work/mqtt-bench" --addr "127.0.0.1:$port" --scenario idle --conns 10000 --pid "$pid")
  printf 'idle memory %-10s %s KB per connection\n' "$target" "$(echo "$out" | field kb_per_conn)"
done
