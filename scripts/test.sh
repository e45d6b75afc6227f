#!/usr/bin/env bash
# Runs the whole TokenBroker test suite on a fresh machine, installing what it needs:
#   - Debian packages the tests use (only when missing; needs root or sudo),
#   - the .NET build (Release) and the NUnit suites (real Kestrel servers on loopback),
#   - the Node interop tests (openid-client + jose verifying issued tokens; npm ci from the lockfile).
# Prints one last line "N passed, N failed" counted from the test results, and exits non-zero on any failure
# or when no test ran.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
results="$root/.artifacts/test-results"
rm -rf "$results"
mkdir -p "$results"

# Debian packages the suite needs (SoftHSM2 + OpenSSL pkcs11 engine + pkcs11-tool for the HSM signer tests).
# Installed only when missing, with one apt-get update.
packages=(nodejs npm softhsm2 libengine-pkcs11-openssl opensc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || command -v "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi

for tool in dotnet node npm; do
  command -v "$tool" >/dev/null 2>&1 || { echo "required tool '$tool' is missing"; exit 1; }
done

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

echo "== build (Release)"
dotnet build TokenBroker.sln -c Release -nologo -v quiet

status=0
echo "== NUnit suites"
# -m:1 runs the test projects one after the other: the rule engine's 100 ms regex match timeout tripped in
# TokenBroker.Rules.Tests while the HSM/key-generation tests loaded both CPUs of a small CI machine (about +5 s).
dotnet test TokenBroker.sln -c Release --no-build -nologo -m:1 \
  --logger "trx" --logger "console;verbosity=minimal" --results-directory "$results" || status=1

echo "== Node interop tests"
interop_log="$results/interop.log"
(
  cd tests/interop
  npm ci --no-audit --no-fund --loglevel=error
  TOKENBROKER_DLL="$root/src/TokenBroker/bin/Release/net10.0/tokenbroker.dll" node --test --test-reporter=spec
) 2>&1 | tee "$interop_log" || status=1
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# Count results: NUnit from the TRX counters, Node from the spec reporter's summary.
passed=0
failed=0
for trx in "$results"/*.trx; do
  [ -f "$trx" ] || continue
  counters=$(grep -o '<Counters [^>]*>' "$trx" | head -1)
  p=$(sed -n 's/.* passed="\([0-9]*\)".*/\1/p' <<<"$counters")
  f=$(sed -n 's/.* failed="\([0-9]*\)".*/\1/p' <<<"$counters")
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
done
np=$(grep -E '^ℹ pass [0-9]+' "$interop_log" | tail -1 | awk '{print $3}')
nf=$(grep -E '^ℹ fail [0-9]+' "$interop_log" | tail -1 | awk '{print $3}')
if [ -z "$np" ]; then
  echo "interop tests printed no summary"
  status=1
fi
passed=$((passed + ${np:-0}))
failed=$((failed + ${nf:-0}))

if [ "$passed" -eq 0 ]; then
  echo "no test ran"
  status=1
fi
[ "$failed" -eq 0 ] || status=1
echo "${passed} passed, ${failed} failed"
exit $status
