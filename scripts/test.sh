#!/usr/bin/env bash
# Runs the whole TokenBroker test suite on a fresh machine, installing what it needs:
#   - Debian packages the tests use (only when missing; needs root or sudo): redis-server for the state tests,
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

# Debian packages the suite needs: Node.js and jq (interop and sample tests), redis-server (state tests), SoftHSM2 +
# OpenSSL's pkcs11 engine + pkcs11-tool (HSM signer tests). Installed only when missing, with one apt-get update.
packages=(nodejs npm jq redis-server softhsm2 libengine-pkcs11-openssl opensc)
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

for tool in dotnet node npm redis-server redis-cli; do
  command -v "$tool" >/dev/null 2>&1 || { echo "required tool '$tool' is missing"; exit 1; }
done

export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

echo "== build (Release)"
dotnet build TokenBroker.sln -c Release -nologo -v quiet

status=0
echo "== NUnit suites"
# One test assembly at a time (-m:1): on a 2-core CI machine, three assemblies plus their Kestrel and redis-server
# processes in parallel starve each other, and time-budgeted code (the rule engine's regex timeout, the Redis
# operation budget) then fails for reasons that have nothing to do with the code under test.
dotnet test TokenBroker.sln -c Release --no-build -nologo -m:1 \
  --logger "trx" --logger "console;verbosity=minimal" --results-directory "$results" || status=1

echo "== Policy tests (config/tests against config/rules) and lint of the sample rules"
tokenbroker_dll="$root/src/TokenBroker/bin/Release/net10.0/tokenbroker.dll"
policy_log="$results/policy-tests.log"
dotnet "$tokenbroker_dll" rules lint config/rules || status=1
dotnet "$tokenbroker_dll" rules test config/tests --rules config/rules 2>&1 | tee "$policy_log" || status=1

echo "== Multi-replica demonstration (three brokers on one redis-server)"
replica_log="$results/multi-replica.log"
dotnet samples/multi-replica/bin/Release/net10.0/TokenBroker.MultiReplicaDemo.dll "$tokenbroker_dll" 2>&1 | tee "$replica_log" || status=1

echo "== Node interop tests"
interop_log="$results/interop.log"
(
  cd tests/interop
  npm ci --no-audit --no-fund --loglevel=error
  TOKENBROKER_DLL="$tokenbroker_dll" node --test --test-reporter=spec
) 2>&1 | tee "$interop_log" || status=1
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

# Count results: NUnit from the TRX counters, policy tests from their summary line, Node from the spec reporter's summary.
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
# add_summary NAME LOG PREFIX: adds "<PREFIX>: N passed, N failed" (the last such line of LOG) to the totals.
add_summary() {
  local line p f
  line=$(grep -E "^$3: [0-9]+ passed, [0-9]+ failed$" "$2" | tail -1 || true)
  if [ -z "$line" ]; then
    echo "$1 printed no summary"
    status=1
    return
  fi
  read -r p f < <(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed$/\1 \2/' <<<"$line")
  passed=$((passed + p))
  failed=$((failed + f))
}
add_summary "policy tests" "$policy_log" "rules test"
add_summary "multi-replica demonstration" "$replica_log" "multi-replica demo"
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
