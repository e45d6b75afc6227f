#!/usr/bin/env bash
# End-to-end load benchmark: builds Release, starts the broker as its own process plus a fake issuer, pre-mints
# unique job tokens and drives POST /token over loopback at 1, 8, 32 and 128 connections, then prints
# exchanges/s, latency percentiles, the broker's CPU and peak RSS, and the ratio to the in-process
# cryptographic ceiling measured in the same run.
# Usage: bash bench/load.sh [--redis] [--connections 1,8,32,128] [--driver wrk|dotnet] [--duration S] [--requests N]
#                          [--wrk-rate 25000] [--server-gc true] [--set Key=Value ...] [--env NAME=VALUE ...]
#   --driver wrk (default when wrk is installed; installed here when missing and root): wrk + bench/wrk/exchange.lua
#     for --duration seconds per level (default 5); --driver dotnet: an HttpClient loop of --requests per level.
#   e.g. --set TokenBroker:Signing:Keys:0:Source=generated --set TokenBroker:Signing:Keys:0:Algorithm=RS256
#   --variant LABEL [--broker DLL] [--env ...] [--set ...] (repeatable) [--rounds 3]: interleaved A/B rounds of builds or
#     settings with the same pre-minted tokens instead of one run (docs/performance.md, "Comparing builds").
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v wrk >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y -qq wrk >/dev/null || echo "wrk could not be installed; using the dotnet driver" >&2
fi
dotnet build src/TokenBroker -c Release -nologo -v quiet
dotnet build bench/TokenBroker.LoadTest -c Release -nologo -v quiet
exec dotnet bench/TokenBroker.LoadTest/bin/Release/net10.0/TokenBroker.LoadTest.dll "$@"
