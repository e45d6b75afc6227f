#!/usr/bin/env bash
# Counts what one exchange costs the broker and redis-server in system calls, context switches and CPU time:
# runs one 20 s level of the load test (Redis state, 32 connections) and attaches `perf stat` to the broker and to
# redis-server for 10 s in its middle. Counts per exchange move far less than exchanges/s on a noisy machine, so
# they show what a change does to the syscall and wake-up pattern (docs/performance.md, fifth session).
# Usage: bash bench/syscalls.sh [load test options, e.g. --broker /path/to/tokenbroker.dll --env NAME=VALUE]
# Needs perf (Debian: linux-perf) and root or kernel.perf_event_paranoid <= 1 for the tracepoints.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v perf >/dev/null || { echo "perf is not installed (apt-get install linux-perf)" >&2; exit 1; }
dotnet build src/TokenBroker -c Release -nologo -v quiet
dotnet build bench/TokenBroker.LoadTest -c Release -nologo -v quiet
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
dotnet bench/TokenBroker.LoadTest/bin/Release/net10.0/TokenBroker.LoadTest.dll --redis --connections 32 --duration 20 --warmup-seconds 8 "$@" > "$out/load.txt" 2>&1 &
load=$!
for _ in $(seq 1 600); do pgrep -f "wrk.*-d 20s" >/dev/null && break; sleep 1; done
sleep 4
broker=$(for p in $(pgrep -f "tokenbroker.dll"); do tr '\0' ' ' < "/proc/$p/cmdline" | grep -qE "LoadTest|bash" || echo "$p"; done | head -1)
redis=$(pgrep -x redis-server | head -1)
events=sched:sched_switch,raw_syscalls:sys_enter,syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_sched_yield,syscalls:sys_enter_pwrite64,task-clock
perf stat -x, -e "$events" -p "$broker" -o "$out/broker.txt" -- sleep 10 &
perf stat -x, -e sched:sched_switch,raw_syscalls:sys_enter,task-clock -p "$redis" -o "$out/redis.txt" -- sleep 10 &
wait "$load" || { cat "$out/load.txt"; exit 1; }
wait
grep -E '^\| 32 |ceiling' "$out/load.txt"
rate=$(grep -E '^\| 32 ' "$out/load.txt" | awk -F'|' '{print $3}' | tr -d ' ')
python3 - "$rate" "$out/broker.txt" "$out/redis.txt" <<'PY'
import sys
exchanges = float(sys.argv[1]) * 10
print(f"per exchange, over 10 s at {sys.argv[1]} exchanges/s:")
for path, who in ((sys.argv[2], 'broker'), (sys.argv[3], 'redis-server')):
    for line in open(path):
        fields = line.strip().split(',')
        if len(fields) < 3 or not fields[0].replace('.', '').isdigit():
            continue
        value, event = float(fields[0]), fields[2]
        if event == 'task-clock':
            print(f"  {who:12s} {'CPU time (µs)':32s} {value * 1000 / exchanges:8.1f}")
        else:
            print(f"  {who:12s} {event:32s} {value / exchanges:8.3f}")
PY
