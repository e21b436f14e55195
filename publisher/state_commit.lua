-- One commit, atomically and in one round trip: write the merged buckets only if each still
-- holds the string the merge started from ('' for a missing bucket: a bucket string is never
-- empty), then the bookkeeping. Returns 0, or the position of the first bucket that changed.
-- KEYS: n buckets, the rejected hash, the meta hash.
-- ARGV: n, n expected strings, n merged strings, records created, r, r rejected (key, digest)
--       pairs, then the keys of changed records (valid again: no longer rejected).
local n = tonumber(ARGV[1])
for i = 1, n do
  if (redis.call('GET', KEYS[i]) or '') ~= ARGV[1 + i] then return i end
end
for i = 1, n do redis.call('SET', KEYS[i], ARGV[1 + n + i]) end
local at = 2 + 2 * n
local created = tonumber(ARGV[at])
if created > 0 then redis.call('HINCRBY', KEYS[n + 2], 'tracked', created) end
local pairs_end = at + 1 + 2 * tonumber(ARGV[at + 1])
for i = at + 2, pairs_end, 1000 do
  redis.call('HSET', KEYS[n + 1], unpack(ARGV, i, math.min(i + 999, pairs_end)))
end
for i = pairs_end + 1, #ARGV, 1000 do
  redis.call('HDEL', KEYS[n + 1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return 0
