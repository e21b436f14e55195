-- Extend the lock's TTL only when it still holds our token (atomic compare-and-extend).
-- KEYS[1] the lock; ARGV[1] our token, ARGV[2] the new TTL in milliseconds.
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
