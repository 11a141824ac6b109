-- entroq-redis contract 1: claim.lua
-- Claims one available task (at <= now) from one of several queues, under a lease.
--
-- Every queue that has an available task is equally likely to be chosen, and within
-- that queue every available task is equally likely. Cost: O(log n) per queue looked
-- at, never a scan of the available tasks.
--
-- KEYS[1]  {ns}:queues     queue index; names the namespace slot (must equal ARGV[1] .. "queues")
-- ARGV[1]  key prefix      "{ns}:" (every other key is derived from it, see lua/README.md)
-- ARGV[2]  contract        "1"
-- ARGV[3]  claimant        non-empty, at most 128 bytes
-- ARGV[4]  duration_ms     integer, 0 .. 31622400000 (lease length; 0 = claimable again at once)
-- ARGV[5]  rank_random     integer, 0 .. 2^52-1 (picks the task within the chosen queue)
-- ARGV[6]  order_random    integer, 0 .. 2^31-1 (seeds the queue shuffle)
-- ARGV[7..] queue          1 .. 1000 queue names, each 1 .. 1024 bytes; duplicates are ignored
--
-- Reply (claimed):   {1, task}  where task = {queue, id, version, at_ms, claimant, value,
--                                              created_ms, modified_ms, claims, attempt, err}
-- Reply (nothing):   {0, wait_ms}  wait_ms = ms until the earliest future arrival among the
--                                  queues, or -1 when they hold no tasks at all
-- Errors:            EQ_BADARG <message>  (bad input; nothing written)
--                    EQ_CONTRACT <message> (wrong contract version or key prefix)
--                    EQ_CORRUPT <message>  (an index names a missing task record, or a record
--                                           has a format this script cannot read)

local MAX_QUEUES = 1000
local MAX_QUEUE_BYTES = 1024
local MAX_CLAIMANT_BYTES = 128
local MAX_DURATION_MS = 31622400000
local RECORD_FORMAT = '>Bi4i8i8i8i4i4I2c0I2c0I4c0'

local prefix = ARGV[1]
if ARGV[2] ~= '1' then
  return redis.error_reply('EQ_CONTRACT claim.lua speaks contract 1, caller sent ' .. tostring(ARGV[2]))
end
if #ARGV < 7 then
  return redis.error_reply('EQ_BADARG claim.lua needs at least 7 ARGV entries, got ' .. #ARGV)
end
if type(prefix) ~= 'string' or not string.match(prefix, '^{[^{}]+}:$') then
  return redis.error_reply('EQ_CONTRACT ARGV[1] must be a key prefix of the form "{namespace}:"')
end
if KEYS[1] ~= prefix .. 'queues' then
  return redis.error_reply('EQ_CONTRACT KEYS[1] must be the key prefix followed by "queues"')
end

local function bad(message)
  return redis.error_reply('EQ_BADARG ' .. message)
end

local function parse_integer(text, low, high)
  if text == nil or not string.match(text, '^%-?%d+$') then return nil end
  local number = tonumber(text)
  if number == nil or number < low or number > high then return nil end
  return number
end

local claimant = ARGV[3]
if claimant == nil or claimant == '' then return bad('claimant must not be empty') end
if #claimant > MAX_CLAIMANT_BYTES then
  return bad('claimant is longer than ' .. MAX_CLAIMANT_BYTES .. ' bytes')
end
local duration = parse_integer(ARGV[4], 0, MAX_DURATION_MS)
if duration == nil then
  return bad('duration_ms must be an integer from 0 to ' .. MAX_DURATION_MS .. ', got ' .. tostring(ARGV[4]))
end
local rank_random = parse_integer(ARGV[5], 0, 4503599627370495)
if rank_random == nil then return bad('rank_random must be an integer from 0 to 2^52-1') end
local order_random = parse_integer(ARGV[6], 0, 2147483647)
if order_random == nil then return bad('order_random must be an integer from 0 to 2^31-1') end

local queues = {}
local seen = {}
for i = 7, #ARGV do
  local queue = ARGV[i]
  if queue == '' then return bad('queue names must not be empty') end
  if #queue > MAX_QUEUE_BYTES then return bad('queue name is longer than ' .. MAX_QUEUE_BYTES .. ' bytes') end
  if not seen[queue] then
    seen[queue] = true
    queues[#queues + 1] = queue
  end
end
if #queues == 0 then return bad('at least one queue is required') end
if #queues > MAX_QUEUES then return bad('at most ' .. MAX_QUEUES .. ' queues per claim, got ' .. #queues) end

local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- Park-Miller generator seeded by the caller: deterministic for replication, and
-- not Lua's math.random, which restarts from the same sequence after a server start.
local state = (order_random % 2147483646) + 1
local function next_index(bound)
  state = (state * 48271) % 2147483647
  return state % bound
end

-- Lazy Fisher-Yates: the first queue of a uniformly random order that has an available
-- task is uniform over the queues that have one, and we can stop as soon as we find it.
local chosen, available = nil, 0
local earliest_future = nil
local count = #queues
for i = 1, count do
  local j = i + next_index(count - i + 1)
  queues[i], queues[j] = queues[j], queues[i]
  local queue_key = prefix .. 'q:' .. queues[i]
  local first = redis.call('ZRANGE', queue_key, 0, 0, 'WITHSCORES')
  if first[1] then
    local first_at = tonumber(first[2])
    if first_at <= now then
      chosen = queues[i]
      available = redis.call('ZCOUNT', queue_key, '-inf', now)
      break
    elseif earliest_future == nil or first_at < earliest_future then
      earliest_future = first_at
    end
  end
end

if chosen == nil then
  if earliest_future == nil then return {0, -1} end
  return {0, earliest_future - now}
end

local queue_key = prefix .. 'q:' .. chosen
local id = redis.call('ZRANGE', queue_key, rank_random % available, rank_random % available)[1]
local task_key = prefix .. 't:' .. id
local record = redis.call('GET', task_key)
if not record then
  return redis.error_reply('EQ_CORRUPT queue ' .. chosen .. ' lists task ' .. id .. ' but its record is missing')
end
local format_version, version, at, created, modified, claims, attempt, queue, old_claimant, err, value_start =
  struct.unpack(RECORD_FORMAT, record)
if format_version ~= 1 then
  return redis.error_reply('EQ_CORRUPT task ' .. id .. ' has record format ' .. format_version .. ', this script reads 1')
end
local value = string.sub(record, value_start)

-- All checks are done; writes start here.
version = version + 1
claims = claims + 1
at = now + duration
modified = now
redis.call('SET', task_key, struct.pack(RECORD_FORMAT, 1, version, at, created, modified, claims, attempt,
  #queue, queue, #claimant, claimant, #err, err) .. value)
redis.call('ZADD', queue_key, at, id)
redis.call('ZADD', prefix .. 'c:' .. queue, at, id)

-- Claim-count histogram behind the exact max_claims of queue stats.
local histogram_key = prefix .. 'h:' .. queue
local order_key = prefix .. 'm:' .. queue
if claims > 1 then
  if redis.call('HINCRBY', histogram_key, claims - 1, -1) <= 0 then
    redis.call('HDEL', histogram_key, claims - 1)
    redis.call('ZREM', order_key, claims - 1)
  end
end
if redis.call('HINCRBY', histogram_key, claims, 1) == 1 then
  redis.call('ZADD', order_key, claims, claims)
end

return {1, {queue, id, version, at, claimant, value, created, modified, claims, attempt, err}}
