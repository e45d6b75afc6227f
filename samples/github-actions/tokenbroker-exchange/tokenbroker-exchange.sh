#!/usr/bin/env bash
# Exchanges a CI job token for a TokenBroker token (RFC 8693): the script behind the composite action in this
# directory, also runnable on its own (any CI, or a workstation with TOKENBROKER_JOB_TOKEN). Needs bash, curl, jq.
#
# Inputs (environment):
#   TOKENBROKER_URL         the broker's issuer URL, e.g. https://sts.ci.example.com (required)
#   TOKENBROKER_AUDIENCE    audience(s) for the issued token, separated by spaces or newlines (required)
#   TOKENBROKER_SCOPE       space-separated scopes (optional; default: what the rule grants)
#   TOKENBROKER_TOKEN_TYPE  access_token (default) or jwt (a plain JWT for cloud federation)
#   TOKENBROKER_JOB_TOKEN_AUDIENCE  the audience of the job token (default: TOKENBROKER_URL)
#   The job token: TOKENBROKER_JOB_TOKEN (e.g. a GitLab id_token variable), or on GitHub Actions it is requested
#   with ACTIONS_ID_TOKEN_REQUEST_URL / ACTIONS_ID_TOKEN_REQUEST_TOKEN (needs `permissions: id-token: write`).
#
# Output: the token on stdout (only the token), or with GITHUB_OUTPUT set, outputs `token` and `expires-in`
# (the token is masked first). On refusal: a one-line message with the broker's error id on stderr, exit 1.
set -euo pipefail

fail() { echo "tokenbroker-exchange: $*" >&2; exit 1; }
command -v curl >/dev/null || fail "curl is required"
command -v jq >/dev/null || fail "jq is required"
[ -n "${TOKENBROKER_URL:-}" ] || fail "TOKENBROKER_URL is not set"
[ -n "${TOKENBROKER_AUDIENCE:-}" ] || fail "TOKENBROKER_AUDIENCE is not set"
broker=${TOKENBROKER_URL%/}
job_audience=${TOKENBROKER_JOB_TOKEN_AUDIENCE:-$broker}
on_github=false
[ -n "${GITHUB_OUTPUT:-}" ] && on_github=true

job_token=${TOKENBROKER_JOB_TOKEN:-}
if [ -z "$job_token" ]; then
  [ -n "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ] && [ -n "${ACTIONS_ID_TOKEN_REQUEST_TOKEN:-}" ] ||
    fail "no job token: set TOKENBROKER_JOB_TOKEN, or on GitHub Actions grant 'permissions: id-token: write'"
  separator='?'
  case "$ACTIONS_ID_TOKEN_REQUEST_URL" in *\?*) separator='&' ;; esac
  response=$(curl -sS --fail-with-body --max-time 30 \
    -H "Authorization: Bearer $ACTIONS_ID_TOKEN_REQUEST_TOKEN" \
    "${ACTIONS_ID_TOKEN_REQUEST_URL}${separator}audience=$(jq -rn --arg a "$job_audience" '$a|@uri')") ||
    fail "the CI provider refused the job-token request: $response"
  job_token=$(jq -r '.value // empty' <<<"$response")
  [ -n "$job_token" ] || fail "the CI provider's answer has no token"
fi
$on_github && echo "::add-mask::$job_token"

token_type=urn:ietf:params:oauth:token-type:access_token
case "${TOKENBROKER_TOKEN_TYPE:-access_token}" in
  access_token) ;;
  jwt) token_type=urn:ietf:params:oauth:token-type:jwt ;;
  *) fail "TOKENBROKER_TOKEN_TYPE must be access_token or jwt" ;;
esac

form=(--data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:token-exchange"
      --data-urlencode "subject_token=$job_token"
      --data-urlencode "subject_token_type=urn:ietf:params:oauth:token-type:id_token"
      --data-urlencode "requested_token_type=$token_type")
for audience in $TOKENBROKER_AUDIENCE; do
  form+=(--data-urlencode "audience=$audience")
done
[ -n "${TOKENBROKER_SCOPE:-}" ] && form+=(--data-urlencode "scope=$TOKENBROKER_SCOPE")

# Retries with back-off only for 503 (the broker fails closed when a dependency is down) and 429.
body_file=$(mktemp)
trap 'rm -f "$body_file"' EXIT
for attempt in 1 2 3 4 5; do
  status=$(curl -sS --max-time 30 -o "$body_file" -w '%{http_code}' -X POST "$broker/token" "${form[@]}") || status=000
  case "$status" in
    200) break ;;
    503|429|000)
      [ "$attempt" -lt 5 ] || break
      retry_after=$(( attempt * 2 ))
      echo "tokenbroker-exchange: broker answered $status; retrying in ${retry_after}s" >&2
      sleep "$retry_after" ;;
    *) break ;;
  esac
done

if [ "$status" != 200 ]; then
  error=$(jq -r '.error // "unknown"' "$body_file" 2>/dev/null || echo unknown)
  error_id=$(jq -r '.error_id // "-"' "$body_file" 2>/dev/null || echo -)
  description=$(jq -r '.error_description // empty' "$body_file" 2>/dev/null || true)
  fail "exchange refused: HTTP $status $error [$error_id] ${description:-(no description)} — see the FAQ entry for $error_id"
fi

token=$(jq -r '.access_token // empty' "$body_file")
[ -n "$token" ] || fail "the broker's answer has no access_token"
expires_in=$(jq -r '.expires_in // empty' "$body_file")
if $on_github; then
  echo "::add-mask::$token"
  { echo "token=$token"; echo "expires-in=$expires_in"; } >>"$GITHUB_OUTPUT"
else
  printf '%s\n' "$token"
fi
