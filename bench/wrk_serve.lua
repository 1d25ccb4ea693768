-- wrk load for bench/bench_serve.py (the locustfile's twin, for `--load wrk`): each connection
-- posts prepared request bodies in turn, with no wait. bench_serve.py sets
--   URGENCY_BENCH_BODIES  file with one request body per line (round robin)
--   URGENCY_BENCH_PATH    the endpoint, e.g. /v1/score or /invocations
--   URGENCY_BENCH_API_KEY sent as X-API-Key (empty: no key header, for mlflow's server)
-- and reads the one JSON line `done` prints (latencies in microseconds).

local bodies = {}
for line in io.lines(os.getenv("URGENCY_BENCH_BODIES")) do
  bodies[#bodies + 1] = line
end
local path = os.getenv("URGENCY_BENCH_PATH")
local headers = { ["Content-Type"] = "application/json" }
local key = os.getenv("URGENCY_BENCH_API_KEY")
if key ~= nil and key ~= "" then
  headers["X-API-Key"] = key
end

local next_body = 0
request = function()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", path, headers, bodies[next_body])
end

done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "failures": %d, "p50": %.0f, "p95": %.0f, "p99": %.0f}\n',
    summary.requests, summary.duration,
    errors.connect + errors.read + errors.write + errors.status + errors.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
