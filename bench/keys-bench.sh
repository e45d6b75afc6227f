#!/usr/bin/env bash
# Signing throughput on this machine: local ES256 and RS256 keys and PKCS#11 (SoftHSM2) ES256 and RS256 keys,
# one thread each, through `tokenbroker keys bench`. Creates a throw-away SoftHSM2 token in a temp dir.
# Needs: the .NET SDK, softhsm2, opensc (pkcs11-tool), libengine-pkcs11-openssl.
# Usage: bash bench/keys-bench.sh [seconds per key, default 3]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-3}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. bench/softhsm-token.sh
make_softhsm_token "$work"
cat > "$work/tokenbroker.json" <<JSON
{"TokenBroker": {"Signing": {"Keys": [
  {"Source": "pkcs11", "Uri": "pkcs11:token=bench;object=es256", "PinFile": "$work/pin", "Algorithm": "ES256"},
  {"Source": "pkcs11", "Uri": "pkcs11:token=bench;object=rs256", "PinFile": "$work/pin", "Algorithm": "RS256"}
]}}}
JSON
dotnet build src/TokenBroker -c Release -nologo -v quiet >/dev/null
dotnet src/TokenBroker/bin/Release/net10.0/tokenbroker.dll keys bench --config "$work/tokenbroker.json" --seconds "$seconds"
