-- entroq-redis contract 3: claim_id.lua
-- Claims one given task by ID if it is available now (at <= now), under a lease.
--
-- EntroQ's `eqc tryclaimid`: the effect on the task is exactly claim.lua's (version + 1,
-- claims + 1, the caller as claimant, at = now + duration), so the claim fences every
-- earlier holder; a task that is leased or delayed (at > now), whoever holds it, is not
-- claimed. Cost: O(log n) in the size of the task's queue.
--
-- KEYS[1]  {ns}:queues     queue index; names the namespace slot (must equal ARGV[1] .. "queues")
-- ARGV[1]  key prefix      "{ns}:" (every other key is derived from it, see lua/README.md)
-- ARGV[2]  contract        "3"
-- ARGV[3]  claimant        non-empty, at most 128 bytes
-- ARGV[4]  duration_ms     integer, 0 .. 31622400000 (lease length; 0 = claimable again at once)
-- ARGV[5]  id              the task's ID, 1 .. 64 bytes
-- ARGV[6]  queue           at most 1024 bytes: the queue the task must be in ("" = any queue)
--
-- Reply (claimed):   {1, task}  where task = {queue, id, version, at_ms, claimant, value,
--                                              created_ms, modified_ms, claims, attempt, err}
-- Reply (not now):   {0, wait_ms}  the task exists but is leased or delayed; wait_ms = ms
--                                  until its arrival (>= 1); nothing written
-- Reply (missing):   {-1, -1}  no task with that ID (in that queue, if one is named)
-- Errors:            EQ_BADARG <message>  (bad input; nothing written)
--                    EQ_CONTRACT <message> (wrong contract version or key prefix)
--                    EQ_CORRUPT <message>  (the record has a format this script cannot read, or
--                                           its queue's index does not list the task)

local MAX_ID_BYTES = 64
local MAX_QUEUE_BYTES = 1024
local MAX_CLAIMANT_BYTES = 128
local MAX_DURATION_MS = 31622400000
-- shared: record-format begin
local RECORD_FORMAT = '>Bi4i8i8i8i4i4I2c0I2c0I4c0'
-- shared: record-format end

if ARGV[2] ~= '3' then
  return redis.error_reply('EQ_CONTRACT claim_id.lua speaks contract 3, caller sent ' .. tostring(ARGV[2]))
end
if #ARGV ~= 6 then
  return redis.error_reply('EQ_BADARG claim_id.lua needs exactly 6 ARGV entries, got ' .. #ARGV)
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

-- shared: argument-helpers begin
local function bad(message)
  return redis.error_reply('EQ_BADARG ' .. message)
end

local function parse_integer(text, low, high)
  if text == nil or not string.match(text, '^%-?%d+$') then return nil end
  local number = tonumber(text)
  if number == nil or number < low or number > high then return nil end
  return number
end
-- shared: argument-helpers end

local claimant = ARGV[3]
if claimant == '' then return bad('claimant must not be empty') end
-- shared: claimant-and-duration begin
if #claimant > MAX_CLAIMANT_BYTES then
  return bad('claimant is longer than ' .. MAX_CLAIMANT_BYTES .. ' bytes')
end
local duration = parse_integer(ARGV[4], 0, MAX_DURATION_MS)
if duration == nil then
  return bad('duration_ms must be an integer from 0 to ' .. MAX_DURATION_MS .. ', got ' .. tostring(ARGV[4]))
end
-- shared: claimant-and-duration end
local id = ARGV[5]
if id == '' or #id > MAX_ID_BYTES then return bad('task id must be 1 to ' .. MAX_ID_BYTES .. ' bytes') end
local wanted_queue = ARGV[6]
if #wanted_queue > MAX_QUEUE_BYTES then
  return bad('queue name is longer than ' .. MAX_QUEUE_BYTES .. ' bytes')
end

-- shared: clock begin
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- shared: clock end

local task_key = prefix .. 't:' .. id
local record = redis.call('GET', task_key)
if not record then return {-1, -1} end
local format_version, version, at, created, modified, claims, attempt, queue, old_claimant, err, value_start =
  struct.unpack(RECORD_FORMAT, record)
if format_version ~= 1 then
  return redis.error_reply('EQ_CORRUPT task ' .. id .. ' has record format ' .. format_version .. ', this script reads 1')
end
if wanted_queue ~= '' and wanted_queue ~= queue then return {-1, -1} end
if at > now then return {0, at - now} end
local value = string.sub(record, value_start)

-- One read of every key written below, before the first write: a key of another type there
-- (which only a foreign writer leaves) stops the script now instead of half way.
local queue_key = prefix .. 'q:' .. queue
local claimed_key = prefix .. 'c:' .. queue
local histogram_key = prefix .. 'h:' .. queue
local order_key = prefix .. 'm:' .. queue
if not redis.call('ZSCORE', queue_key, id) then
  return redis.error_reply('EQ_CORRUPT task ' .. id .. ' is missing from the index of its queue ' .. queue)
end
redis.call('ZSCORE', claimed_key, id)
redis.call('HGET', histogram_key, claims)
redis.call('ZSCORE', order_key, claims)

-- All checks are done; writes start here, exactly claim.lua's writes for the chosen task.
version = version + 1
claims = claims + 1
at = now + duration
modified = now
redis.call('SET', task_key, struct.pack(RECORD_FORMAT, 1, version, at, created, modified, claims, attempt,
  #queue, queue, #claimant, claimant, #err, err) .. value)
redis.call('ZADD', queue_key, at, id)
redis.call('ZADD', claimed_key, at, id)

-- Claim-count histogram behind the exact max_claims of queue stats.
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
