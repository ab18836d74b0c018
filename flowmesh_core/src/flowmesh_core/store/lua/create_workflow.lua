-- create_workflow: store a workflow, its node states and the tenant's index entry in one
-- step, or nothing at all if the id is taken or the submission is a replay.
--
-- KEYS: 1 workflow hash, 2 workflow nodes hash, 3 tenant workflows zset,
--       4 the submission's idempotency key (unused when ARGV[7] is '')
-- ARGV: 1 workflow id, 2 tenant, 3 name, 4 now, 5 spec (JSON), 6 dedup domain,
--       7 '1' when the submission carries an idempotency key, else '',
--       8 seconds the idempotency key is remembered, 9.. node names
-- Returns {1, id} if created, {0, id} if the id already existed, {2, earlier id} if a
-- submission with this idempotency key was made before (nothing is created).

if ARGV[7] == '1' then
  local earlier = redis.call('GET', KEYS[4])
  if earlier then
    return {2, earlier}
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, ARGV[1]}
end
redis.call('HSET', KEYS[1], 'tenant', ARGV[2], 'name', ARGV[3], 'status', 'pending',
  'created_at', ARGV[4], 'spec', ARGV[5], 'domain', ARGV[6])
for i = 9, #ARGV do
  redis.call('HSET', KEYS[2], ARGV[i], 'pending')
end
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
if ARGV[7] == '1' then
  redis.call('SET', KEYS[4], ARGV[1], 'EX', tonumber(ARGV[8]))
end
return {1, ARGV[1]}
