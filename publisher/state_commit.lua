-- One commit, atomically and in one round trip: write the merged buckets only if each still
-- holds the string the merge started from ('' for a missing bucket: a bucket string is never
-- empty), then the bookkeeping. Returns 0, or the position of the first bucket that changed.
-- A merged string that is empty deletes its bucket (its last record was forgotten).
-- KEYS: n buckets, the rejected hash, the meta hash, the pending hash (the journal).
-- ARGV: n, n expected strings, n merged strings, the change of the tracked count (records
--       created, less records forgotten), r, r rejected (key, digest) pairs, then the keys
--       of changed or forgotten records (no longer rejected, no longer pending: what a
--       later page sends of them it writes down after this commit).
local n = tonumber(ARGV[1])
for i = 1, n do
  if (redis.call('GET', KEYS[i]) or '') ~= ARGV[1 + i] then return i end
end
for i = 1, n do
  local merged = ARGV[1 + n + i]
  if merged == '' then redis.call('DEL', KEYS[i]) else redis.call('SET', KEYS[i], merged) end
end
local at = 2 + 2 * n
local tracked = tonumber(ARGV[at])
if tracked ~= 0 then redis.call('HINCRBY', KEYS[n + 2], 'tracked', tracked) end
local pairs_end = at + 1 + 2 * tonumber(ARGV[at + 1])
for i = at + 2, pairs_end, 1000 do
  redis.call('HSET', KEYS[n + 1], unpack(ARGV, i, math.min(i + 999, pairs_end)))
end
for i = pairs_end + 1, #ARGV, 1000 do
  redis.call('HDEL', KEYS[n + 1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  redis.call('HDEL', KEYS[n + 3], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
return 0
