-- apply.lua decides every bucket of one Backend.Apply call (or, in a
-- Cluster, of the call's buckets in one hash slot) and charges them by the
-- call's mode, atomically.
--
-- Why one script and not MULTI/EXEC (see also Kuadrant/limitador's
-- limitador/src/storage/redis/scripts.rs): a decision needs the stored state
-- before it can compute the new one, and whether one bucket is charged
-- depends on the decisions of all the others (all or nothing). MULTI/EXEC
-- cannot branch on what it reads, so it would need WATCH plus a retry loop:
-- at least two round trips per call, unbounded retries on a hot key, and keys
-- may expire between the commands of a transaction. A script reads, decides
-- and writes with no other command in between, in one round trip, and Redis
-- guarantees that no key expires while it runs.
--
-- This file is a script body (EVALSHA) and the body of a function of KEYS
-- and ARGV (FCALL; see libTemplate in script.go): locals only, one return
-- at the end.
--
-- KEYS: the distinct bucket keys.
-- ARGV[1]: mode (0 all_or_nothing, 1 charge_always, 2 stop_when_over)
-- ARGV[2]: now in microseconds, or -1 to read Redis TIME
-- ARGV[3]: 1 to return the details the Cluster path needs, else 0
-- ARGV[4..]: per request, STRIDE fields: key index (into KEYS), algorithm
--   id, hits, shadow (0|1), then LIMIT_FIELDS limit fields.
--
-- Returns, per request in order, the decision's 5 integers (allowed,
-- remaining, resetAfter, retryAfter, count). With details, then: per
-- request the first pass's decision (5) and the decision with 0 hits on the
-- stored state (remaining, resetAfter, count), the call's flags (an
-- enforcing bucket refused, a shadow bucket refused), and per key: written
-- (0|1), the state before ('' when none), the state written, and the net
-- hits charged.
--
-- The charging rules are backends/memory's, pass for pass: pass 1 decides
-- every request, each key carrying its state from one request to the next;
-- when the mode does not charge everything and something was refused, pass
-- 2 starts again from the stored states, charging the allowed requests
-- unless the call is vetoed, and reports the others as they stand.

local mode = tonumber(ARGV[1])
local now = clock(ARGV[2])
local detail = ARGV[3] == '1'
local nkeys = #KEYS
local nreq = (#ARGV - 3) / STRIDE

local orig, exists = {}, {}
for k = 1, nkeys do
  local v = redis.call('GET', KEYS[k])
  if v then exists[k] = true else v = nil end
  orig[k] = decode(v)
end

local rk, ralg, rhits, rshadow, rlim = {}, {}, {}, {}, {}
for i = 1, nreq do
  local b = 3 + (i - 1) * STRIDE
  rk[i] = tonumber(ARGV[b + 1])
  ralg[i] = tonumber(ARGV[b + 2])
  rhits[i] = tonumber(ARGV[b + 3])
  rshadow[i] = ARGV[b + 4] == '1'
  local l = {}
  for f = 1, LIMIT_FIELDS do l[f] = tonumber(ARGV[b + 4 + f]) end
  rlim[i] = l
end

-- Per key: current state, charged, charged with hits ~= 0, index of the last
-- charged request (its limit sets the expiry), net hits charged.
local cur, charged, hashits, last, net = {}, {}, {}, {}, {}
for k = 1, nkeys do cur[k] = orig[k]; charged[k] = false; hashits[k] = false; net[k] = 0 end

-- Pass 1.
local out = {}
local enf, shd = false, false
for i = 1, nreq do
  local k = rk[i]
  local d, ns = decide(ralg[i], rlim[i], cur[k], now, rhits[i])
  out[i] = d
  cur[k] = ns
  charged[k] = true
  last[k] = i
  net[k] = net[k] + rhits[i]
  if rhits[i] ~= 0 then hashits[k] = true end
  if d[1] == 0 then
    if rshadow[i] then shd = true else enf = true end
  end
end
local first = out

-- Pass 2.
if mode ~= 1 and (enf or shd) then
  local vetoed = enf or mode == 2
  for k = 1, nkeys do cur[k] = orig[k]; charged[k] = false; hashits[k] = false; net[k] = 0 end
  local out2 = {}
  for i = 1, nreq do
    local k = rk[i]
    local done = false
    if not vetoed then
      local d, ns = decide(ralg[i], rlim[i], cur[k], now, rhits[i])
      if d[1] == 1 then
        out2[i] = d
        cur[k] = ns
        charged[k] = true
        last[k] = i
        net[k] = net[k] + rhits[i]
        if rhits[i] ~= 0 then hashits[k] = true end
        done = true
      end
    end
    if not done then
      local c = decide(ralg[i], rlim[i], cur[k], now, 0)
      local o = first[i]
      if o[1] == 1 then
        out2[i] = {1, c[2], c[3], 0, c[5]}
      else
        out2[i] = {0, o[2], o[3], o[4], c[5]}
      end
    end
  end
  out = out2
end

-- Commit: a key is written when charged and either stored already or
-- charged with hits (a check on a new key leaves no trace).
local written, news = {}, {}
for k = 1, nkeys do
  written[k] = 0
  if charged[k] and (exists[k] or hashits[k]) then
    local i = last[k]
    news[k] = encode(cur[k])
    redis.call('SET', KEYS[k], news[k], 'PX', pttl(expiry(ralg[i], rlim[i], cur[k]), now))
    written[k] = 1
  end
end

local res = {}
local n = 0
for i = 1, nreq do
  local d = out[i]
  for f = 1, 5 do res[n + f] = d[f] end
  n = n + 5
end
if detail then
  for i = 1, nreq do
    local d = first[i]
    for f = 1, 5 do res[n + f] = d[f] end
    local c = decide(ralg[i], rlim[i], orig[rk[i]], now, 0)
    res[n + 6] = c[2]
    res[n + 7] = c[3]
    res[n + 8] = c[5]
    n = n + 8
  end
  res[n + 1] = enf and 1 or 0
  res[n + 2] = shd and 1 or 0
  n = n + 2
  for k = 1, nkeys do
    res[n + 1] = written[k]
    res[n + 2] = exists[k] and encode(orig[k]) or ''
    res[n + 3] = news[k] or ''
    res[n + 4] = net[k]
    n = n + 4
  end
end
return res
