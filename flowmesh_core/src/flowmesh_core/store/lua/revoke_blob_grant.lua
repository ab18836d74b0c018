-- revoke_blob_grant: withdraw grantor's grant of a blob to grantee, in one step. Other
-- grantors' grants of the same blob to the same grantee stand; the grantee loses the
-- digest only when the last of them is withdrawn.
--
-- ARGV: 1 digest, 2 grantor, 3 grantee
-- Returns 1 if a grant was withdrawn, 0 if grantor had none to grantee (nothing changes).

local digest, grantor, grantee = ARGV[1], ARGV[2], ARGV[3]
if redis.call('SREM', key('tenant_grants', grantor), key('grant_member', digest, grantee)) == 0 then
  return 0
end
local grantors = key('blob_grantors', digest, grantee)
redis.call('SREM', grantors, grantor)
if redis.call('SCARD', grantors) == 0 then
  redis.call('SREM', key('blob_grantees', digest), grantee)
  redis.call('SREM', key('tenant_granted', grantee), digest)
end
return 1
