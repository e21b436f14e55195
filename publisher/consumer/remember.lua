-- Remember the last applied event of one record, unless a later one is already there.
-- KEYS[1] bucket hash; ARGV: field, sequence, event id, modified (microseconds; '' unknown).
-- A value is "<sequence> <id> <modified>" ("<sequence> <id>" before version 1.1 of the kit).
-- Later means: a later modified, or an equal one and a higher sequence; where either
-- modified is unknown, a higher sequence. A value that cannot be read is replaced.
local current = redis.call('HGET', KEYS[1], ARGV[1])
if current then
  local sequence, modified = string.match(current, '^(%-?%d+) %S+ ?(%d*)$')
  sequence = tonumber(sequence)
  if sequence then
    local wanted = tonumber(ARGV[2])
    if modified ~= '' and ARGV[4] ~= '' and modified ~= ARGV[4] then
      if tonumber(modified) > tonumber(ARGV[4]) then return 0 end
    elseif sequence > wanted then
      return 0
    end
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4])
return 1
