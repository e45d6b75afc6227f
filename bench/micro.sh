#!/usr/bin/env bash
# Micro-benchmarks of the exchange hot path (BenchmarkDotNet, Release, allocations per operation).
# Usage: bash bench/micro.sh [BenchmarkDotNet args, e.g. --filter '*Rules*' --job short]
set -euo pipefail
cd "$(dirname "$0")/.."
exec dotnet run -c Release --project bench/TokenBroker.Benchmarks -- --filter "${BENCH_FILTER:-*}" --artifacts .artifacts/benchmarks "$@"
