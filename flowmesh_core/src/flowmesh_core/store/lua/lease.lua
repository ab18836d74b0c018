-- lease: acquire or renew the scheduler lease. ARGV[1] is the caller's fencing token;
-- the lease is granted if free or already held by that token, and its TTL renewed.
--
-- KEYS: 1 lease key
-- ARGV: 1 token, 2 ttl in milliseconds
-- Returns 1 if the caller holds the lease now, 0 if another token does.

local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
