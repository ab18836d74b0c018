-- tenant_record: replace a tenant's record (its quotas), wherever it is kept: the tenant's
-- hash and every one of its token entries, in one step, and only if the record is still
-- the one the caller read (so two concurrent changes cannot mix).
--
-- ARGV: 1 tenant name, 2 the record as read, 3 the new record
-- Returns 1 if replaced, 0 if the record changed since it was read, -1 if no such tenant.

local name = ARGV[1]
local tk = key('tenant', name)
local record = redis.call('HGET', tk, 'record')
if not record then
  return -1
end
if record ~= ARGV[2] then
  return 0
end
redis.call('HSET', tk, 'record', ARGV[3])
local entries = redis.call('HGETALL', KEY.tenant_tokens)
for i = 1, #entries, 2 do
  local ok, decoded = pcall(cjson.decode, entries[i + 1])
  if ok and type(decoded) == 'table' and decoded.name == name then
    redis.call('HSET', KEY.tenant_tokens, entries[i], ARGV[3])
  end
end
return 1
