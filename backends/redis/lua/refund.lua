-- refund.lua undoes what apply.lua charged in one hash slot of a Cluster
-- call that another slot vetoed (all or nothing across slots).
--
-- Like apply.lua, a script body and the body of a function of KEYS and ARGV.
--
-- KEYS: the keys apply.lua wrote.
-- ARGV[1]: now in microseconds, or -1 to read Redis TIME
-- ARGV[2..]: per key, REFUND_STRIDE fields: the state before the charge (''
--   when the key did not exist), the state the charge wrote, the net hits
--   it charged, the algorithm id, then LIMIT_FIELDS limit fields.
--
-- When the key still holds what the charge wrote, the state before is put
-- back exactly (or the key deleted). When another call changed it in
-- between, the net hits are given back as a refund (negative hits) on the
-- state as it is now; a charge whose net hits were not positive is left as
-- it is. Returns the number of keys restored exactly.

local now = clock(ARGV[1])
local exact = 0
for k = 1, #KEYS do
  local b = 1 + (k - 1) * REFUND_STRIDE
  local before, wrote, hits = ARGV[b + 1], ARGV[b + 2], tonumber(ARGV[b + 3])
  local id = tonumber(ARGV[b + 4])
  local l = {}
  for f = 1, LIMIT_FIELDS do l[f] = tonumber(ARGV[b + 4 + f]) end
  local v = redis.call('GET', KEYS[k])
  if v == wrote then
    if before == '' then
      redis.call('DEL', KEYS[k])
    else
      redis.call('SET', KEYS[k], before, 'KEEPTTL')
    end
    exact = exact + 1
  elseif v and hits > 0 then
    local _, ns = decide(id, l, decode(v), now, -hits)
    redis.call('SET', KEYS[k], encode(ns), 'PX', pttl(expiry(id, l, ns), now))
  end
end
return exact
