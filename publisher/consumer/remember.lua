-- Remember the last applied event of one record, unless a higher sequence is already there.
-- KEYS[1] bucket hash; ARGV: field, sequence, event id. A value is "<sequence> <id>".
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local sequence = tonumber(string.match(current, '^(%d+)'))
  if sequence > tonumber(ARGV[2]) then return 0 end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3])
return 1
