-- wrk script for bench/load.sh: POST /token with pre-minted job tokens, each sent exactly once.
-- The load test writes every wrk thread its own file $TB_REQUESTS.<thread index> of whole HTTP requests, each preceded
-- by its length in 8 decimal digits, so no token is sent twice (replay protection really writes) and request() only
-- reads the next one from a 1 MiB stdio buffer: little work for the load generator, which shares the broker's cores.
-- init() reads nothing. wrk runs each thread's init() on its main thread after starting the threads before it, and
-- starts its clock only after the last one, so a slow init() (formatting every request up front took about 2 s per
-- 250,000 requests) let the first thread send uncounted-time requests that were counted: a rate inflated by several
-- per cent. A thread that runs out of requests marks itself exhausted and sends GET /healthz instead; the harness then
-- reports the level as invalid.
local threads = {}
local index = 0

function setup(thread)
  thread:set("id", index)
  index = index + 1
  table.insert(threads, thread)
end

function init(args)
  file = assert(io.open(os.getenv("TB_REQUESTS") .. "." .. id, "rb"))
  file:setvbuf("full", 1048576)
  exhausted = 0
  health = wrk.format("GET", "/healthz")
end

function request()
  local size = file:read(8)
  if size == nil then
    exhausted = exhausted + 1
    return health
  end
  return file:read(tonumber(size))
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
