-- wrk script for benches/http.sh: with WRK_HOSTS set ("ADDR ADDR ..."),
-- thread i connects to the i-th address (round robin), so that one wrk
-- spreads its connections over several backends without a proxy and still
-- reports one latency distribution. The URL's host only names the port and
-- the Host header. Without WRK_HOSTS it changes nothing.
local hosts = {}
for h in string.gmatch(os.getenv("WRK_HOSTS") or "", "%S+") do
  hosts[#hosts + 1] = h
end
local port = nil
local n = 0

function setup(thread)
  if #hosts == 0 then
    return
  end
  if port == nil then
    port = wrk.port or "80"
  end
  n = n + 1
  thread.addr = wrk.lookup(hosts[(n - 1) % #hosts + 1], port)[1]
end

-- The tail of the latency distribution, which wrk's --latency report
-- stops short of (it prints up to p99): parsed by benches/l7_report.py.
function done(summary, latency, requests)
  io.write(string.format("Tail latency: p99.9 %d us, max %d us\n",
    latency:percentile(99.9), latency.max))
end
