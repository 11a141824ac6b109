-- entroq-redis contract 3: time.lua
-- Reads the store's clock on the node that owns the namespace.
--
-- Every availability and lease decision uses this clock (TIME inside the scripts). On a
-- single server plain TIME gives the same answer; on a cluster TIME has no key to route
-- by, so this script, routed by KEYS[1], reads the clock of the node the other scripts
-- run on.
--
-- KEYS[1]  {ns}:queues     queue index; names the namespace slot (must equal ARGV[1] .. "queues")
-- ARGV[1]  key prefix      "{ns}:"
-- ARGV[2]  contract        "3"
--
-- Reply:   {now_ms}  ms since the epoch
-- Errors:  EQ_BADARG <message>, EQ_CONTRACT <message>

if ARGV[2] ~= '3' then
  return redis.error_reply('EQ_CONTRACT time.lua speaks contract 3, caller sent ' .. tostring(ARGV[2]))
end
if #ARGV < 2 then
  return redis.error_reply('EQ_BADARG time.lua needs at least 2 ARGV entries, got ' .. #ARGV)
end
-- shared: prefix-check begin
local prefix = ARGV[1]
if type(prefix) ~= 'string' or not string.match(prefix, '^{[^{}]+}:$') then
  return redis.error_reply('EQ_CONTRACT ARGV[1] must be a key prefix of the form "{namespace}:"')
end
if KEYS[1] ~= prefix .. 'queues' then
  return redis.error_reply('EQ_CONTRACT KEYS[1] must be the key prefix followed by "queues"')
end
-- shared: prefix-check end

local clock = redis.call('TIME')
return {tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)}
