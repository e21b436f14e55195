-- Delete the lock only when it still holds our token (atomic compare-and-delete).
-- KEYS[1] the lock; ARGV[1] our token.
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
