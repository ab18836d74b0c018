-- heartbeat: a registered worker is alive at ARGV[2] (and holds the models in ARGV[3]
-- warm, the checkpoints and cached input blobs in ARGV[4] on its disk).
--
-- KEYS: 1 the worker's record, 2 the workers' sorted set (scored by last heartbeat)
-- ARGV: 1 worker id, 2 time of the beat (seconds), 3 warm models as JSON ('' keeps them),
--       4 checkpoint and input-blob digests held on disk as JSON ('' keeps them)
-- Returns 1 if recorded. Returns 0 and writes nothing if the worker has no record (the
-- control plane took it for dead and forgot it, or Redis lost its data: it must register
-- again) or the record holds a later beat. A beat that a network partition held back
-- and TCP delivered late must neither bring back a forgotten worker as a record without
-- a profile nor turn a live worker's heartbeat back in time (it would look dead).

if redis.call('HEXISTS', KEYS[1], 'profile') == 0 then
  return 0
end
local beat = tonumber(ARGV[2])
local last = tonumber(redis.call('HGET', KEYS[1], 'heartbeat') or '0') or 0
if beat <= last then
  return 0
end
redis.call('HSET', KEYS[1], 'heartbeat', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[1], 'warm', ARGV[3])
end
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[1], 'held', ARGV[4])
end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
