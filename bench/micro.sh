#!/usr/bin/env bash
# Micro-benchmarks of the exchange hot path (BenchmarkDotNet, Release, allocations per operation).
# Usage: bash bench/micro.sh                         (all benchmarks)
#        bash bench/micro.sh --filter '*Rules*' --job short
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--filter '*')
exec dotnet run -c Release --project bench/TokenBroker.Benchmarks -- --artifacts .artifacts/benchmarks "${args[@]}"
