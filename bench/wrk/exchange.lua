-- wrk script for bench/load.sh: POST /token with pre-minted job tokens, each sent exactly once.
-- The load test writes one url-encoded form body per line to $TB_BODIES.<thread index>; every wrk thread reads its
-- own file, so no token is sent twice (replay protection really writes). A thread that runs out of bodies marks
-- itself exhausted and sends GET /healthz instead; the harness then reports the level as invalid.
local threads = {}
local index = 0

function setup(thread)
  thread:set("id", index)
  index = index + 1
  table.insert(threads, thread)
end

function init(args)
  -- Whole requests are formatted here, before the measurement, so that request() costs the load generator (which
  -- shares the broker's cores) as little as possible.
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  requests = {}
  for line in io.lines(os.getenv("TB_BODIES") .. "." .. id) do
    requests[#requests + 1] = wrk.format("POST", "/token", headers, line)
  end
  count = #requests
  next_request = 0
  exhausted = 0
  health = wrk.format("GET", "/healthz")
end

function request()
  next_request = next_request + 1
  if next_request > count then
    exhausted = exhausted + 1
    return health
  end
  return requests[next_request]
end

function done(summary, latency, requests)
  local exhausted_total = 0
  for _, t in ipairs(threads) do
    exhausted_total = exhausted_total + t:get("exhausted")
  end
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT {\"requests\":%d,\"duration_us\":%d,\"http_errors\":%d,\"socket_errors\":%d,\"exhausted\":%d,\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"max_us\":%d}\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout, exhausted_total,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
