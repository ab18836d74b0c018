-- tenant_tokens: replace or revoke every token of a tenant, in one step. Each token is
-- stored as its sha256 only, in the tokens hash (hash -> tenant record); the tenant's
-- entries are found by the name in their record, so a tenant created before this
-- script existed is covered too. Its workflows, lineage and results are left alone
-- (an admin still reads them).
--
-- ARGV: 1 tenant name, 2 the new token's hash ('' to revoke: no token is left), 3 now
-- Returns the number of tokens that stopped working, or -1 if there is no such tenant.

local name, new_hash = ARGV[1], ARGV[2]
local tk = key('tenant', name)
local record = redis.call('HGET', tk, 'record')
if not record then
  return -1
end
local gone = 0
local entries = redis.call('HGETALL', KEY.tenant_tokens)
for i = 1, #entries, 2 do
  local ok, decoded = pcall(cjson.decode, entries[i + 1])
  if ok and type(decoded) == 'table' and decoded.name == name then
    redis.call('HDEL', KEY.tenant_tokens, entries[i])
    gone = gone + 1
  end
end
if new_hash ~= '' then
  redis.call('HSET', KEY.tenant_tokens, new_hash, record)
  redis.call('HDEL', tk, 'revoked_at')
else
  redis.call('HSET', tk, 'revoked_at', ARGV[3])
end
return gone
