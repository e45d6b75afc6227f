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
  bodies = {}
  for line in io.lines(os.getenv("TB_BODIES") .. "." .. id) do
    bodies[#bodies + 1] = line
  end
  next_body = 0
  exhausted = 0
  headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
end

function request()
  next_body = next_body + 1
  if next_body > #bodies then
    exhausted = exhausted + 1
    return wrk.format("GET", "/healthz")
  end
  return wrk.format("POST", "/token", headers, bodies[next_body])
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
