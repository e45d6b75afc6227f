#!/usr/bin/env bash
# Three broker replicas on one Redis: a replay refused on another replica, a block effective on all replicas
# within a second, and the same JWKS and active key everywhere during a key rotation. Needs redis-server.
set -euo pipefail
cd "$(dirname "$0")/../.."
dotnet build src/TokenBroker -c Release -nologo -v quiet
dotnet build samples/multi-replica -c Release -nologo -v quiet
exec dotnet samples/multi-replica/bin/Release/net10.0/TokenBroker.MultiReplicaDemo.dll src/TokenBroker/bin/Release/net10.0/tokenbroker.dll
