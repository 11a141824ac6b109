-- wrk script: GET /healthz (the service's no-op route), reporting like claim_delete.lua.
--
--   wrk -t2 -c16 -d10s -s benchmarks/wrk/noop.lua http://HOST:PORT/healthz

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'WRK_RESULT {"requests":%d,"seconds":%.3f,"failed":%d,"socket_errors":%d,'
      .. '"latency_p50_us":%d,"latency_p99_us":%d}\n',
    summary.requests, summary.duration / 1e6, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
