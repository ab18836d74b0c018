-- set_resume: record a running op's latest intermediate checkpoint (its resume point),
-- only while the op is in flight. The steps that forget an op (complete, fail, cancel, a
-- dropped requeue) delete its resume point in the same step, so a late write from a
-- worker still training a run that is over cannot bring one back.
--
-- ARGV: 1 domain, 2 op key, 3 the point (JSON), 4 time to live in milliseconds
-- Returns 1 if recorded, 0 if the op is no longer in flight.

if redis.call('EXISTS', key('op', ARGV[1], ARGV[2])) == 0 then
  return 0
end
redis.call('SET', key('resume', ARGV[1], ARGV[2]), ARGV[3], 'PX', ARGV[4])
return 1
