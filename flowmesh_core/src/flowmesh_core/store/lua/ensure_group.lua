-- ensure_group: create a stream's consumer group (and the stream) unless it exists.
-- A group found missing where one existed before means Redis lost its data: the caller
-- says so loudly.
--
-- KEYS: 1 stream
-- ARGV: 1 group name
-- Returns 1 if the group was created now, 0 if it existed.

if redis.call('EXISTS', KEYS[1]) == 1 then
  for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    for i = 1, #group, 2 do
      if group[i] == 'name' and group[i + 1] == ARGV[1] then
        return 0
      end
    end
  end
end
redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], '0', 'MKSTREAM')
return 1
