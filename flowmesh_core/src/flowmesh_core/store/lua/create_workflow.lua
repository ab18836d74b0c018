-- create_workflow: store a workflow, its node states and the tenant's index entry in one
-- step, or nothing at all if the id is taken.
--
-- KEYS: 1 workflow hash, 2 workflow nodes hash, 3 tenant workflows zset
-- ARGV: 1 workflow id, 2 tenant, 3 name, 4 now, 5 spec (JSON), 6 dedup domain,
--       7.. node names
-- Returns 1 if created, 0 if the id already existed.

if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'tenant', ARGV[2], 'name', ARGV[3], 'status', 'pending',
  'created_at', ARGV[4], 'spec', ARGV[5], 'domain', ARGV[6])
for i = 7, #ARGV do
  redis.call('HSET', KEYS[2], ARGV[i], 'pending')
end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
return 1
