#!/usr/bin/env bash
# End to end with a PKCS#11 key (SoftHSM2) against the local key, interleaved in one run: creates a throw-away
# SoftHSM2 token with an ES256 key in a temp dir, then runs the load test's comparison mode (Redis state; the same
# pre-minted job tokens for both; variants alternate, reversed every other round) and prints each round and the
# medians. The issue's target is PKCS#11 >= 40 % of the local-key rate.
# Needs: the .NET SDK, redis-server, wrk, softhsm2, opensc (pkcs11-tool), libengine-pkcs11-openssl (installed here
# when missing and root).
# Usage: bash bench/hsm-compare.sh [--connections 8,32] [--rounds 3] [other load test options]
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v softhsm2-util >/dev/null || missing+=(softhsm2)
  command -v pkcs11-tool >/dev/null || missing+=(opensc)
  ls /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so >/dev/null 2>&1 || missing+=(libengine-pkcs11-openssl)
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. bench/softhsm-token.sh
make_softhsm_token "$work"
dotnet build src/TokenBroker -c Release -nologo -v quiet >/dev/null
dotnet build bench/TokenBroker.LoadTest -c Release -nologo -v quiet >/dev/null
connections=8,32
rounds=3
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) connections=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
# The load test takes the first occurrence of an option, so the caller's options go first and override these.
exec dotnet bench/TokenBroker.LoadTest/bin/Release/net10.0/TokenBroker.LoadTest.dll "${rest[@]}" --redis --connections "$connections" \
  --duration 10 --warmup-seconds 8 --rounds "$rounds" \
  --variant local-es256 \
  --variant pkcs11-es256 --set TokenBroker:Signing:Keys:0:Source=pkcs11 \
  --set "TokenBroker:Signing:Keys:0:Uri=pkcs11:token=bench;object=es256;type=private" \
  --set "TokenBroker:Signing:Keys:0:PinFile=$work/pin" --set TokenBroker:Signing:Keys:0:Algorithm=ES256
