-- pktgen-dpdk 23.06 Lua driver for benches/pktgen.sh: runs one .pkt script
-- on port 0, lets it settle, then reads pktgen's own rx/tx rates once a
-- second and writes them, with the port's totals, to a file; optionally
-- measures latency with pktgen's timestamped probes. Needs a pktgen built
-- with -Denable_lua=true. Everything comes from the environment:
--   PKT       the .pkt script to load (it must end with "start 0")
--   OUT       where to write the results (one "key value..." per line)
--   SECS      seconds measured (default 5), WARM seconds before (default 2)
--   MARK      optional shell command, run with "start" and "end" appended
--             when the measured window opens and closes (its time and the
--             counters of the device under test are taken there); the
--             "total" line counts pktgen's packets between the two
--   LAT_RATE  if set: a latency run instead. Traffic at LAT_RATE percent of
--             the link's speed, a probe every LAT_US microseconds (default
--             1000), every probe sampled into LAT_OUT (one value in ns a line)
local env = os.getenv
local out = assert(io.open(env("OUT"), "w"))
local secs = tonumber(env("SECS") or "5")
local warm = tonumber(env("WARM") or "2")
local mark = env("MARK")
local lat_rate = env("LAT_RATE")

local function mark_at(what)
  if mark and mark ~= "" then os.execute(mark .. " " .. what) end
end

pktgen.screen("off")
-- The memif link comes up once both sides are ready: wait for it (10 s).
local link = ""
for _ = 1, 100 do
  link = pktgen.linkState("0")[0] or ""
  if string.find(link, "UP", 1, true) then break end
  pktgen.delay(100)
end
out:write("link " .. link .. "\n")
pktgen.load(env("PKT"))
if lat_rate then
  pktgen.stop("0")
  pktgen.set("0", "rate", lat_rate)
  pktgen.latency("0", "rate", tonumber(env("LAT_US") or "1000"))
  pktgen.latency("0", "enable")
  -- simple sampler: up to 50,000 samples (pktgen 23.06's maximum is 50,108),
  -- at most 1,000,000 a second, i.e. every probe until then
  pktgen.latsampler_params("0", "simple", 50000, 1000000, env("LAT_OUT"))
  pktgen.start("0")
  pktgen.delay(warm * 1000)
  pktgen.latsampler("0", "on")
end
pktgen.delay(warm * 1000)
mark_at("start")
local s0 = pktgen.portStats("0", "port")[0]
for _ = 1, secs do
  pktgen.delay(1000)
  local r = pktgen.portStats("0", "rate")[0]
  out:write(string.format("rate %d %d\n", r.pkts_rx, r.pkts_tx))
  out:flush()
end
local s1 = pktgen.portStats("0", "port")[0]
mark_at("end")
if lat_rate then pktgen.latsampler("0", "off") end
pktgen.stop("0")
out:write(string.format("total %d %d %d %d %d\n", s1.ipackets - s0.ipackets,
  s1.opackets - s0.opackets, s1.imissed - s0.imissed, s1.ierrors - s0.ierrors,
  s1.oerrors - s0.oerrors))
out:write("done\n")
out:close()
pktgen.delay(200)
pktgen.quit()
