-- wrk script: claim -> delete jobs through the entroq-redis HTTP service.
--
--   wrk -t2 -c16 -d10s -s benchmarks/wrk/claim_delete.lua http://HOST:PORT -- QUEUE NAMESPACE [finish]
--
-- Two-call mode (default): every claimed task is deleted by a later request of the same
-- thread (POST /api/v0/claim, then POST /api/v0/modify with the task's id and version), so a
-- job is two requests. "finish" mode: the next claim carries the task in `finish` (our
-- ClaimRequest extension), so a job is one request. wrk calls request() per connection
-- whenever that connection may send; the claimed tasks wait in a per-thread list, which keeps
-- claims and deletes paired however wrk interleaves its connections. Tasks are held under the
-- thread's own claimant ID, so only that thread can delete them.
--
-- done() prints one line: WRK_RESULT {json}.

threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  queue = args[1] or "bench"
  finish_mode = args[3] == "finish"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["EntroQ-Namespace"] = args[2] or "eq"
  claimant = "wrk-" .. tostring(thread_id) .. "-" .. tostring(math.random(1, 1000000000))
  claim_body = '{"claimantId":"' .. claimant .. '","queues":["' .. queue .. '"],"durationMs":"30000"}'
  pending = {}
  claims, deletes, finishes, hits, failed = 0, 0, 0, 0, 0
end

local function task_ref(held)
  return '{"id":"' .. held[1] .. '","version":' .. held[2] .. '}'
end

function request()
  local held = table.remove(pending)
  if finish_mode then
    if held then
      finishes = finishes + 1
      return wrk.format("POST", "/api/v0/claim", nil, '{"claimantId":"' .. claimant .. '","queues":["'
        .. queue .. '"],"durationMs":"30000","finish":[' .. task_ref(held) .. ']}')
    end
    claims = claims + 1
    return wrk.format("POST", "/api/v0/claim", nil, claim_body)
  end
  if held then
    deletes = deletes + 1
    return wrk.format("POST", "/api/v0/modify", nil,
      '{"claimantId":"' .. claimant .. '","deletes":[' .. task_ref(held) .. ']}')
  end
  claims = claims + 1
  return wrk.format("POST", "/api/v0/claim", nil, claim_body)
end

function response(status, headers, body)
  if status ~= 200 then
    failed = failed + 1
    return
  end
  local id = string.match(body, '"id":"([^"]+)"')
  if id then
    hits = hits + 1
    table.insert(pending, {id, string.match(body, '"version":"?(%d+)')})
  end
end

function done(summary, latency, requests)
  local total = {claims = 0, deletes = 0, finishes = 0, hits = 0, failed = 0}
  for _, thread in ipairs(threads) do
    for name, _ in pairs(total) do
      total[name] = total[name] + thread:get(name)
    end
  end
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"seconds":%.3f,"claims_sent":%d,"deletes_sent":%d,"finishes_sent":%d,'
      .. '"claimed":%d,"failed":%d,"socket_errors":%d,"latency_p50_us":%d,"latency_p99_us":%d}\n',
    summary.requests, summary.duration / 1e6, total.claims, total.deletes, total.finishes, total.hits,
    total.failed, errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
