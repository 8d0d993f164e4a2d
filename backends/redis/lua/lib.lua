-- lib.lua: the Lua twins of package algorithms, shared by apply.lua and
-- refund.lua. Go concatenates this file before each of them for EVALSHA,
-- and puts it with both into one library of Redis Functions, where it runs
-- once, inside a function (see libTemplate in script.go). Either way it
-- only defines locals: no globals, no return.
--
-- Numbers in Redis's Lua 5.1 are doubles. Every value here is an integer
-- count of hits or of microseconds whose magnitude stays below 2^53, where
-- doubles are exact: Go clamps its arguments to that range (see args.go).
-- Integer division and remainder are never computed with a bare `/` or `%`
-- on big operands (a rounded quotient can be off by one): use idiv and fmod.

local floor, fmod = math.floor, math.fmod
-- Saturation bounds: math.MaxInt64 and math.MinInt64 as doubles.
local MAXI = 9223372036854775807
local MINI = -9223372036854775808

-- addsat is a + b clamped to [MINI, MAXI], as algorithms.addSat.
local function addsat(a, b)
  local s = a + b
  if s > MAXI then return MAXI end
  if s < MINI then return MINI end
  return s
end

-- floormod is a mod b for b > 0, in [0, b) also for negative a, exactly.
local function floormod(a, b)
  local m = fmod(a, b)
  if m < 0 then m = m + b end
  return m
end

-- idiv is Go's a / b for integers (truncated toward zero), exactly.
local function idiv(a, b)
  local q = a / b
  if q >= 0 then q = floor(q) else q = -floor(-q) end
  -- Correct a quotient rounded across an integer boundary.
  local r = a - q * b
  if b > 0 then
    if a >= 0 then
      if r < 0 then q = q - 1 elseif r >= b then q = q + 1 end
    else
      if r > 0 then q = q + 1 elseif r <= -b then q = q - 1 end
    end
  else
    if a >= 0 then
      if r < 0 then q = q + 1 elseif r >= -b then q = q - 1 end
    else
      if r > 0 then q = q - 1 elseif r <= b then q = q + 1 end
    end
  end
  return q
end

local min, max = math.min, math.max

-- Go's integer / (truncated toward zero) and % (the dividend's sign).
local tdiv = idiv
local function tmod(a, b) return fmod(a, b) end

-- floordiv is algorithms.floorDiv: a/b rounded down, for b > 0.
local function floordiv(a, b)
  local q = tdiv(a, b)
  if fmod(a, b) ~= 0 and a < 0 then q = q - 1 end
  return q
end

-- ceildiv is algorithms.ceilDiv: a/b rounded up, for a >= 0 and b > 0.
local function ceildiv(a, b)
  local q = tdiv(a, b)
  if fmod(a, b) ~= 0 then q = q + 1 end
  return q
end

-- algorithms.MaxAmount, budget, maxTime and leaseSlots.
local MAXAMOUNT = 1099511627776
local BUDGET = 1125899906842624
local MAXTIME = MAXI
local SLOTS = 6

local function clamp_amount(v)
  return min(max(v, 0), MAXAMOUNT)
end

-- ticks is algorithms.ticks.
local function ticks(amount, length)
  local u, p = 1, length
  while amount > 0 and p > tdiv(BUDGET, amount) do
    u = u * 10
    p = ceildiv(length, u)
  end
  return u, p
end

-- st builds a state of NSTATE (8) integers, missing ones 0. It is
-- written out, not a loop over {...}: it runs for every decision.
assert(NSTATE == 8, 'lib.lua: st, decode and encode expect 8 state fields')
local function st(a, b, c, d, e, f, g, h)
  return {a or 0, b or 0, c or 0, d or 0, e or 0, f or 0, g or 0, h or 0}
end

-- A decision is {allowed (0|1), remaining, resetAfter, retryAfter, count};
-- a state is a table of NSTATE integers (algorithms.State's fields in
-- order: s[1] is A, s[2] B, ...); a limit is the table {Rate, Period,
-- Burst, WindowStart, WindowEnd}.

-- in_window is algorithms.inWindow.
local function in_window(l, now)
  return l[4] < l[5] and l[4] <= now and now < l[5]
end

-- fixed_decide is algorithms.fixedDecide.
local function fixed_decide(rate, count, hits, reset)
  if count < 0 then count = 0 end
  local after = addsat(count, hits)
  if after < 0 then after = 0 end
  local allowed, remaining, retry = 0, 0, 0
  if after <= rate then
    allowed = 1
    remaining = rate - after
  else
    retry = reset
    if hits > rate then retry = -1 end
  end
  if remaining < 0 then remaining = 0 end
  return {allowed, remaining, reset, retry, after}, after
end

-- fixed_calendar is algorithms.fixedCalendar.
local function fixed_calendar(l, s, now, hits)
  local start, e = l[4], l[5]
  local count = 0
  if s[1] == start then
    count = s[2]
  elseif s[2] > 0 and s[1] == e and s[3] > e then
    start, e, count = s[1], s[3], s[2]
  end
  local d, after = fixed_decide(l[1], count, hits, e - now)
  return d, st(start, after, e)
end

-- fixed_window is algorithms.fixedWindow.
local function fixed_window(l, s, now, hits)
  if in_window(l, now) then return fixed_calendar(l, s, now, hits) end
  local period = l[2]
  if period <= 0 then period = 1 end
  local into = floormod(now, period)
  local start = now - into
  local reset = period - into
  local count = 0
  if s[1] == start then
    count = s[2]
  elseif s[2] > 0 and start <= MAXI - period and s[1] == start + period then
    start = s[1]
    count = s[2]
    reset = addsat(reset, period)
  end
  local d, after = fixed_decide(l[1], count, hits, reset)
  return d, st(start, after)
end

local function fixed_window_expiry(l, s)
  if s[3] > s[1] then return s[3] end
  local period = l[2]
  if period <= 0 then period = 1 end
  return addsat(s[1], period)
end

-- sliding_retry is algorithms.slidingRetry.
local function sliding_retry(rate, cur, pw, hits, start, e, now, u, pt)
  local room = rate - max(cur + hits, 0)
  if room >= 0 and pw > 0 then
    local x = pt - tdiv(room * pt, pw)
    local t = start + x * u
    if t < e then return t - now end
  end
  local x = 0
  local p2 = min(cur, rate)
  if p2 > 0 then x = max(pt - tdiv((rate - max(hits, 0)) * pt, p2), 0) end
  return e + x * u - now
end

-- sliding_window is algorithms.slidingWindow.
local function sliding_window(l, s, now, hits)
  local rate = clamp_amount(l[1])
  local start, e
  if in_window(l, now) then
    start, e = l[4], l[5]
  else
    local period = max(l[2], 1)
    start = now - floormod(now, period)
    e = start + period
  end
  local elapsed = now - start
  local cur, prev = 0, 0
  if s[1] == start and s[4] == e then
    cur, prev = s[2], s[3]
  elseif s[4] == start then
    prev = s[2]
  elseif s[2] > 0 and s[1] == e and s[4] > e then
    start, e, cur, prev, elapsed = s[1], s[4], s[2], s[3], 0
  end
  cur, prev = min(max(cur, 0), BUDGET), min(max(prev, 0), BUDGET)
  local length = e - start
  local u, pt = ticks(rate, length)
  local pw = min(prev, rate)
  local weighted = ceildiv(pw * (pt - tdiv(elapsed, u)), pt)
  local newcur = min(max(addsat(cur, hits), 0), BUDGET)
  local allowed, remaining, reset, retry = 0, 0, 0, 0
  if hits <= rate and newcur + weighted <= rate then
    allowed = 1
    remaining = rate - newcur - weighted
  elseif hits > rate then
    retry = -1
  else
    retry = sliding_retry(rate, cur, pw, hits, start, e, now, u, pt)
  end
  local shown = cur
  if allowed == 1 then shown = newcur end
  if shown > 0 then
    reset = e + length - now
  elseif weighted > 0 then
    reset = e - now
  end
  return {allowed, remaining, reset, retry, newcur + weighted}, st(start, newcur, prev, e)
end

local function sliding_window_expiry(l, s)
  if s[2] <= 0 then return s[4] end
  if l[4] < l[5] then return s[4] + 2 * (s[4] - s[1]) end
  return s[4] + (s[4] - s[1])
end

-- new_bucket is algorithms.newBucket.
local function new_bucket(l)
  local rate = clamp_amount(l[1])
  local cap = rate
  if l[3] > 0 then cap = clamp_amount(l[3]) end
  if rate == 0 then cap = 0 end
  local u, p = ticks(max(rate, cap), max(l[2], 1))
  return {rate = rate, cap = cap, u = u, p = p, capP = cap * p}
end

-- drain is bucket.drain.
local function drain(b, level, e)
  if level <= 0 or b.rate == 0 or e <= 0 then return max(level, 0) end
  if e >= ceildiv(level, b.rate) then return 0 end
  return level - e * b.rate
end

-- bucket_decide is bucket.decide.
local function bucket_decide(b, level, n, now, hits)
  local allowed, remaining, reset, retry = 0, 0, 0, 0
  local after = level
  if hits > b.cap then
    retry = -1
    after = b.capP
  elseif hits >= 0 then
    if level + hits * b.p <= b.capP then
      allowed = 1
      after = level + hits * b.p
    else
      local k = ceildiv(level - (b.capP - hits * b.p), b.rate)
      retry = (n + k) * b.u - now
      after = b.capP
    end
  else
    allowed = 1
    if -hits >= ceildiv(level, b.p) then
      after = 0
    else
      after = level + hits * b.p
    end
  end
  local shown = level
  if allowed == 1 then
    shown = after
    remaining = tdiv(b.capP - after, b.p)
  end
  if shown > 0 then reset = (n + ceildiv(shown, b.rate)) * b.u - now end
  return {allowed, remaining, reset, retry, ceildiv(after, max(b.p, 1))}, after
end

-- token_level is bucket.tokenLevel.
local function token_level(b, s, n)
  if s[2] <= 0 or s[3] <= 0 then return 0 end
  local level = s[2]
  if s[3] ~= b.p then level = min(ceildiv(s[2], s[3]), b.cap) * b.p end
  return min(drain(b, level, n - floordiv(s[1], b.u)), b.capP)
end

-- token_bucket is algorithms.tokenBucket.
local function token_bucket(l, s, now, hits)
  local b = new_bucket(l)
  local n = floordiv(now, b.u)
  local d, after = bucket_decide(b, token_level(b, s, n), n, now, hits)
  return d, st(max(now, s[1]), after, b.p)
end

local function token_bucket_expiry(l, s)
  local b = new_bucket(l)
  if s[2] <= 0 or s[3] <= 0 then return s[1] end
  if b.rate == 0 then return MAXTIME end
  local level = token_level(b, s, floordiv(s[1], b.u))
  return (floordiv(s[1], b.u) + ceildiv(level, b.rate)) * b.u
end

-- gcra_level is bucket.gcraLevel.
local function gcra_level(b, s, n)
  if s[3] <= 0 or b.rate == 0 then return 0 end
  local tat, rest = floordiv(s[1], b.u), min(max(s[2], 0), b.rate - 1)
  if s[3] ~= b.p then tat, rest = floordiv(s[1] + b.u - 1, b.u), 0 end
  local d = tat - n
  if d < 0 then return 0 end
  if d > ceildiv(b.capP, b.rate) then return b.capP end
  return min(d * b.rate + rest, b.capP)
end

-- gcra is algorithms.gcra.
local function gcra(l, s, now, hits)
  local b = new_bucket(l)
  local n = floordiv(now, b.u)
  local d, after = bucket_decide(b, gcra_level(b, s, n), n, now, hits)
  local a, rest = n * b.u, 0
  if after > 0 and b.rate > 0 then
    a = (n + tdiv(after, b.rate)) * b.u
    rest = tmod(after, b.rate)
  end
  return d, st(a, rest, b.p)
end

local function gcra_expiry(l, s)
  if s[2] > 0 then return s[1] + new_bucket(l).u end
  return s[1]
end

-- concurrency_retry is algorithms.concurrencyRetry; c[i+1] is Go's c[i].
local function concurrency_retry(c, need, cur, slot, now)
  for i = SLOTS, 0, -1 do
    need = need - c[i + 1]
    if need <= 0 then return cur - i * slot + (SLOTS + 1) * slot - now end
  end
  return -1
end

-- concurrency is algorithms.concurrency.
local function concurrency(l, s, now, hits)
  local rate = clamp_amount(l[1])
  local slot = ceildiv(max(l[2], 1), SLOTS)
  local cur = now - floormod(now, slot)
  local c = {s[2], s[3], s[4], s[5], s[6], s[7], s[8]}
  if s[1] == cur then
    -- the newest slot
  elseif s[1] > cur and s[1] - cur <= slot then
    cur = s[1]
  elseif s[1] < cur and tdiv(cur - s[1], slot) <= SLOTS then
    local k = tdiv(cur - s[1], slot)
    for i = SLOTS, 0, -1 do
      if i >= k then c[i + 1] = c[i - k + 1] else c[i + 1] = 0 end
    end
  else
    c = {0, 0, 0, 0, 0, 0, 0}
  end
  local inflight = 0
  for i = 1, SLOTS + 1 do
    c[i] = clamp_amount(c[i])
    inflight = inflight + c[i]
  end
  local allowed, remaining, reset, retry = 0, 0, 0, 0
  if hits > rate then
    retry = -1
  elseif hits >= 0 then
    if inflight + hits <= rate then
      allowed = 1
      c[1] = c[1] + hits
      inflight = inflight + hits
    else
      retry = concurrency_retry(c, inflight + hits - rate, cur, slot, now)
    end
  else
    allowed = 1
    local r = (SLOTS + 1) * MAXAMOUNT
    if hits > -r then r = -hits end
    local i = SLOTS
    while i >= 0 and r > 0 do
      local t = min(c[i + 1], r)
      c[i + 1] = c[i + 1] - t
      r = r - t
      inflight = inflight - t
      i = i - 1
    end
  end
  if allowed == 1 then remaining = max(rate - inflight, 0) end
  for i = 0, SLOTS do
    if c[i + 1] > 0 then
      reset = cur - i * slot + (SLOTS + 1) * slot - now
      break
    end
  end
  return {allowed, remaining, reset, retry, inflight}, st(cur, c[1], c[2], c[3], c[4], c[5], c[6], c[7])
end

local function concurrency_expiry(l, s)
  local held = false
  for i = 2, 8 do
    if s[i] > 0 then held = true end
  end
  if not held then return s[1] end
  return s[1] + (SLOTS + 1) * ceildiv(max(l[2], 1), SLOTS)
end

-- ALGOS maps algorithms.Algorithm ids to {decide, expiry}; an unknown id
-- decides as a fixed window, as algorithms.Decide's default branch.
local ALGOS = {
  [0] = {fixed_window, fixed_window_expiry},
  [1] = {sliding_window, sliding_window_expiry},
  [2] = {token_bucket, token_bucket_expiry},
  [3] = {gcra, gcra_expiry},
  [4] = {concurrency, concurrency_expiry},
}

local function algo(id)
  return ALGOS[id] or ALGOS[0]
end

-- decide is algorithms.Decide; the returned state is a new table, states
-- passed in are never modified.
local function decide(id, l, s, now, hits)
  return algo(id)[1](l, s, now, hits)
end

-- expiry is algorithms.Expiry.
local function expiry(id, l, s)
  return algo(id)[2](l, s)
end

-- Stored form of a state: its integers in decimal, space separated, up to
-- the last one that is not 0 (a fixed window stores 2 or 3 of its 8). One
-- string.format call per state: it runs for every key written.
local FMT = {'%d'}
for n = 2, NSTATE do FMT[n] = FMT[n - 1] .. ' %d' end
local function encode(s)
  local n = NSTATE
  while n > 1 and (s[n] or 0) == 0 do n = n - 1 end
  return string.format(FMT[n], unpack(s, 1, n))
end

-- decode reads a stored state; missing fields are 0 (trimmed by encode,
-- or a state written before State grew).
local find, sub = string.find, string.sub
local function decode(v)
  local s = {0, 0, 0, 0, 0, 0, 0, 0}
  if v then
    local i, p, len = 1, 1, #v
    while i <= NSTATE and p <= len do
      local q = find(v, ' ', p, true) or len + 1
      s[i] = tonumber(sub(v, p, q - 1)) or 0
      i, p = i + 1, q + 1
    end
  end
  return s
end

-- pttl is the key lifetime in milliseconds for a state expiring at e
-- (microseconds), seen at now: until e, plus TTL_MARGIN_MS, at least 1 ms
-- and at most MAX_TTL_MS.
local function pttl(e, now)
  local ms = floor((e - now) / 1000) + 1 + TTL_MARGIN_MS
  if ms < 1 then ms = 1 end
  if ms > MAX_TTL_MS then ms = MAX_TTL_MS end
  return ms
end

local function clock(arg)
  local now = tonumber(arg)
  if now < 0 then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000000 + tonumber(t[2])
  end
  return now
end
