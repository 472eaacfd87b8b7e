#!/usr/bin/env bash
# Persistence figures: the same scenarios against Mosquitto with
# `persistence true` (its default autosave) and this broker memory-only,
# with --durability sync and with --durability periodic, alternating them,
# medians and ratios. Subscribers keep persistent sessions (--persistent),
# so what QoS 1 routes to them is stored. Everything on 127.0.0.1.
#
#   cmd/mqtt-bench/compare-persist.sh [ROUNDS] [SECONDS]
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

MOSQ=18911 MEM=18912 SYNC=18913 PERIODIC=18914
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location %s/\n' "$MOSQ" "$work" > "$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 & pids+=($!)
"$work/broker" --scripts ./scripts --listen "127.0.0.1:$MEM" --data-dir= --log-level warn > "$work/mem.log" 2>&1 & pids+=($!)
"$work/broker" --scripts ./scripts --listen "127.0.0.1:$SYNC" --data-dir "$work/sync" --log-level warn > "$work/sync.log" 2>&1 & pids+=($!)
"$work/broker" --scripts ./scripts --listen "127.0.0.1:$PERIODIC" --data-dir "$work/periodic" --durability periodic --log-level warn > "$work/periodic.log" 2>&1 & pids+=($!)
sleep 1

field() { tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { print $2 }'; }
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
targets="mosq mem sync periodic"
declare -A results
run() { # name args...
  local name=$1; shift
  for ((r = 1; r <= ROUNDS; r++)); do
    local order=($targets) rotated=() k
    for ((k = 0; k < 4; k++)); do rotated+=("${order[$(((k + r) % 4))]}"); done
    for target in "${rotated[@]}"; do
      case $target in mosq) port=$MOSQ ;; mem) port=$MEM ;; sync) port=$SYNC ;; periodic) port=$PERIODIC ;; esac
      out=$("$work/mqtt-bench" --duration "${SECS}s" --persistent --addr "127.0.0.1:$port" "$@")
      results[$name,$target]+="$(echo "$out" | field rate) "
      results[$name,$target,lost]+="$(echo "$out" | field lost) "
    done
  done
}
run "fan-in QoS 0 (msgs/s)"            --scenario fanin --qos 0
run "pairs QoS 1, persistent (msgs/s)" --scenario pairs --qos 1
run "fan-out QoS 1, persistent"        --scenario fanout --qos 1

printf '%-34s %12s %12s %12s %12s  %s\n' scenario "mosq persist" memory sync periodic "sync/mosq periodic/mosq sync/memory (lost: mosq mem sync periodic)"
for name in "fan-in QoS 0 (msgs/s)" "pairs QoS 1, persistent (msgs/s)" "fan-out QoS 1, persistent"; do
  m=$(echo ${results[$name,mosq]} | tr ' ' '\n' | median)
  a=$(echo ${results[$name,mem]} | tr ' ' '\n' | median)
  s=$(echo ${results[$name,sync]} | tr ' ' '\n' | median)
  p=$(echo ${results[$name,periodic]} | tr ' ' '\n' | median)
  lost=""
  for t in $targets; do lost="$lost $(echo ${results[$name,$t,lost]} | tr ' ' '\n' | awk '{ s += $1 } END { print s + 0 }')"; done
  printf '%-34s %12s %12s %12s %12s  %s %s %s (%s)\n' "$name" "$m" "$a" "$s" "$p" \
    "$(awk -v x="$s" -v y="$m" 'BEGIN { printf "%.2fx", x / y }')" \
    "$(awk -v x="$p" -v y="$m" 'BEGIN { printf "%.2fx", x / y }')" \
    "$(awk -v x="$s" -v y="$a" 'BEGIN { printf "%.2fx", x / y }')" "${lost# }"
done
