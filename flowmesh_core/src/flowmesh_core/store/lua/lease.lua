-- lease: acquire or renew the scheduler lease. ARGV[1] is the caller's fencing token;
-- the lease is granted if free or already held by that token, and its TTL renewed.
--
-- KEYS: 1 lease key
-- ARGV: 1 token, 2 ttl in milliseconds
-- Returns 1 if the caller holds the lease now; otherwise minus the milliseconds left
-- on the other token's lease (0 or less), so a standby can retry the moment it lapses.

local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  local left = redis.call('PTTL', KEYS[1])
  if left < 0 then
    left = 0
  end
  return -left
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
