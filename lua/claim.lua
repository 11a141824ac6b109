-- entroq-redis contract 2: claim.lua
-- Claims one available task (at <= now) from one of several queues, under a lease.
--
-- Every queue that has an available task is equally likely to be chosen, and within
-- that queue every available task is equally likely. Cost: O(log n) per non-empty queue
-- looked at (empty ones are dropped by one ZMSCORE on the queue index), never a scan of
-- the available tasks. Needs ZMSCORE: Redis >= 6.2 or any Valkey.
--
-- Optionally it first deletes finished tasks, so a worker commits one task and takes the
-- next in one call. The deletes follow modify.lua's rules exactly (version match, same
-- queue if one is named, not held by another claimant; all or none); if any fails,
-- nothing is deleted and nothing is claimed.
--
-- KEYS[1]  {ns}:queues     queue index; names the namespace slot (must equal ARGV[1] .. "queues")
-- ARGV[1]  key prefix      "{ns}:" (every other key is derived from it, see lua/README.md)
-- ARGV[2]  contract        "2"
-- ARGV[3]  claimant        non-empty, at most 128 bytes
-- ARGV[4]  duration_ms     integer, 0 .. 31622400000 (lease length; 0 = claimable again at once)
-- ARGV[5]  rank_random     integer, 0 .. 2^52-1 (picks the task within the chosen queue)
-- ARGV[6]  order_random    integer, 0 .. 2^31-1 (seeds the queue shuffle)
-- ARGV[7]  n_finish        integer 0 .. 1000: finished tasks to delete first (0 = a plain claim)
-- ARGV[8..] finish, queue  n_finish triples (id, version, queue: "" = wherever the task is),
--                          then 1 .. 1000 queue names, each 1 .. 1024 bytes; duplicates are ignored
--
-- Reply (claimed):   {1, task}  where task = {queue, id, version, at_ms, claimant, value,
--                                              created_ms, modified_ms, claims, attempt, err}
-- Reply (nothing):   {0, wait_ms}  wait_ms = ms until the earliest future arrival among the
--                                  queues, or -1 when they hold no tasks at all
--                    (finished tasks were deleted in both cases)
-- Reply (refused):   {-1, failures}  a finish delete failed; entries as modify.lua's failures
--                                    {kind, reason, id, version, queue, current_version}
-- Errors:            EQ_BADARG <message>  (bad input; nothing written)
--                    EQ_CONTRACT <message> (wrong contract version or key prefix)
--                    EQ_CORRUPT <message>  (an index names a missing task record, or a record
--                                           has a format this script cannot read)

local MAX_QUEUES = 1000
local MAX_ITEMS = 1000
local MAX_ID_BYTES = 64
local MAX_INT32 = 2147483647
local MAX_QUEUE_BYTES = 1024
local MAX_CLAIMANT_BYTES = 128
local MAX_DURATION_MS = 31622400000
local RECORD_FORMAT = '>Bi4i8i8i8i4i4I2c0I2c0I4c0'

local prefix = ARGV[1]
if ARGV[2] ~= '2' then
  return redis.error_reply('EQ_CONTRACT claim.lua speaks contract 2, caller sent ' .. tostring(ARGV[2]))
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

local n_finish = parse_integer(ARGV[7], 0, MAX_ITEMS)
if n_finish == nil then return bad('n_finish must be an integer from 0 to ' .. MAX_ITEMS) end
local finish = {}
local finishing = {}
local position = 8
for i = 1, n_finish do
  local item = {id = ARGV[position], version = parse_integer(ARGV[position + 1], 0, MAX_INT32), queue = ARGV[position + 2]}
  position = position + 3
  if item.id == nil or item.id == '' or #item.id > MAX_ID_BYTES then
    return bad('finish ' .. i .. ' id must be 1 to ' .. MAX_ID_BYTES .. ' bytes')
  end
  if item.version == nil then return bad('finish ' .. i .. ' version must be an integer from 0 to ' .. MAX_INT32) end
  if item.queue == nil or #item.queue > MAX_QUEUE_BYTES then
    return bad('finish ' .. i .. ' queue name is longer than ' .. MAX_QUEUE_BYTES .. ' bytes')
  end
  if finishing[item.id] then return bad('task id ' .. item.id .. ' is finished more than once') end
  finishing[item.id] = true
  finish[i] = item
end

local queues = {}
local seen = {}
for i = position, #ARGV do
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

-- Finish (delete) checks: reads only, exactly modify.lua's delete rules.
local finished = {}
local failures = {}
for _, item in ipairs(finish) do
  local record = redis.call('GET', prefix .. 't:' .. item.id)
  local task = nil
  if record then
    local format_version, version, at, _, _, claims, _, queue, owner = struct.unpack(RECORD_FORMAT, record)
    if format_version ~= 1 then
      return redis.error_reply('EQ_CORRUPT task ' .. item.id .. ' has record format ' .. format_version .. ', this script reads 1')
    end
    task = {id = item.id, version = version, at = at, claims = claims, queue = queue, claimant = owner}
  end
  if not task or (item.queue ~= '' and item.queue ~= task.queue) then
    failures[#failures + 1] = {'DELETE', 'missing', item.id, item.version, item.queue, task and task.version or -1}
  elseif task.version ~= item.version then
    failures[#failures + 1] = {'DELETE', 'mismatch', item.id, item.version, task.queue, task.version}
  elseif task.at > now and task.claimant ~= '' and task.claimant ~= claimant then
    failures[#failures + 1] = {'CLAIM', 'claimed', item.id, item.version, task.queue, task.version}
  else
    finished[#finished + 1] = task
  end
end
if #failures > 0 then return {-1, failures} end

-- Finished tasks that are available now would otherwise count as claimable: they are
-- left out of the choice below (their deletes are applied only after every read).
local leaving = {}
for _, task in ipairs(finished) do
  if task.at <= now then
    leaving[task.queue] = leaving[task.queue] or {}
    table.insert(leaving[task.queue], task.id)
  end
end

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
-- Several queues: one ZMSCORE asks the queue index which of them hold any task at all (a
-- queue is listed exactly while it does), so the names of empty queues cost no call each.
-- Dropping them leaves the choice uniform over the queues that have an available task.
if #queues > 1 then
  local listed = redis.call('ZMSCORE', KEYS[1], unpack(queues))
  local holding = {}
  for i, queue in ipairs(queues) do
    if listed[i] then holding[#holding + 1] = queue end
  end
  queues = holding
end
local count = #queues
for i = 1, count do
  local j = i + next_index(count - i + 1)
  queues[i], queues[j] = queues[j], queues[i]
  local queue_key = prefix .. 'q:' .. queues[i]
  local first_at = nil
  if count > 1 then
    -- Several queues, often mostly empty: one look tells an empty queue from a busy one.
    local first = redis.call('ZRANGE', queue_key, 0, 0, 'WITHSCORES')
    if first[1] then first_at = tonumber(first[2]) end
  end
  if count == 1 or (first_at ~= nil and first_at <= now) then
    -- One queue: counting is the only look needed when it has available tasks.
    available = redis.call('ZCOUNT', queue_key, '-inf', now) - #(leaving[queues[i]] or {})
    if available > 0 then
      chosen = queues[i]
      break
    end
    -- Nothing available here (or only finished tasks): the next arrival is still news.
    local first = redis.call('ZRANGE', queue_key, '(' .. now, '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
    first_at = first[1] and tonumber(first[2]) or nil
  end
  if first_at ~= nil and first_at > now and (earliest_future == nil or first_at < earliest_future) then
    earliest_future = first_at
  end
end

-- Writes start here when nothing is claimed: only the finish deletes.
local function apply_finish()
  for _, task in ipairs(finished) do
    local queue_key = prefix .. 'q:' .. task.queue
    redis.call('ZREM', queue_key, task.id)
    if task.claims > 0 and task.claimant ~= '' then redis.call('ZREM', prefix .. 'c:' .. task.queue, task.id) end
    if task.claims > 0 then
      if redis.call('HINCRBY', prefix .. 'h:' .. task.queue, task.claims, -1) <= 0 then
        redis.call('HDEL', prefix .. 'h:' .. task.queue, task.claims)
        redis.call('ZREM', prefix .. 'm:' .. task.queue, task.claims)
      end
    end
    if redis.call('ZCARD', queue_key) == 0 then redis.call('ZREM', KEYS[1], task.queue) end
    redis.call('DEL', prefix .. 't:' .. task.id)
  end
end

if chosen == nil then
  apply_finish()
  if earliest_future == nil then return {0, -1} end
  return {0, earliest_future - now}
end

-- Uniform rank among the available tasks minus the leaving ones: draw among the
-- remaining count, then step over each leaving task's rank at or below the draw.
local queue_key = prefix .. 'q:' .. chosen
local rank = rank_random % available
local skipped = {}
for _, leaving_id in ipairs(leaving[chosen] or {}) do
  table.insert(skipped, redis.call('ZRANK', queue_key, leaving_id))
end
table.sort(skipped)
for _, skipped_rank in ipairs(skipped) do
  if skipped_rank <= rank then rank = rank + 1 end
end
local id = redis.call('ZRANGE', queue_key, rank, rank)[1]
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

-- All checks are done; writes start here: the finish deletes, then the claim.
apply_finish()
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
