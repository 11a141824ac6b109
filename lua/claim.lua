-- entroq-redis contract 3: claim.lua
-- Claims up to k available tasks (at <= now) from several queues, each under its own lease.
--
-- The call has k slots; each slot is one pick made as a single claim makes it: every queue
-- that still has an available task is equally likely, and within that queue every available
-- task not yet picked by this call. No task is picked twice, also with duration_ms 0 (a task
-- claimed for 0 ms stays available, but not to the later slots of the same call). Slots are
-- filled in order and stop at the first that finds nothing. Cost: O(log n) per pick and per
-- non-empty queue looked at (empty ones are dropped by one ZMSCORE on the queue index), never
-- a scan of the available tasks. Needs ZMSCORE: Redis >= 6.2 or any Valkey.
--
-- Optionally it first deletes finished tasks, so a worker commits its tasks and takes the
-- next ones in one call. The deletes follow modify.lua's rules exactly (version match, same
-- queue if one is named, not held by another claimant than ARGV[3]; all or none); if any
-- fails, nothing is deleted and nothing is claimed.
--
-- KEYS[1]  {ns}:queues     queue index; names the namespace slot (must equal ARGV[1] .. "queues")
-- ARGV[1]  key prefix      "{ns}:" (every other key is derived from it, see lua/README.md)
-- ARGV[2]  contract        "3"
-- ARGV[3]  claimant        at most 128 bytes: the finish deletes are checked against it; in the
--                          "shared" form every slot claims as it (non-empty there)
-- ARGV[4]  duration_ms     integer, 0 .. 31622400000: every slot's lease in the "shared" form
--                          (validated but unused in the "each" form; send 0)
-- ARGV[5]  n_finish        integer 0 .. 1000: finished tasks to delete first (0 = a plain claim)
-- ARGV[6]  n_queues        integer 1 .. 1000: queue names that follow the finish triples
-- ARGV[7]  k               integer 1 .. 1000: slots, the most tasks this call claims
-- ARGV[8]  form            "shared" (slots take ARGV[3] and ARGV[4]) or "each" (slots name their own)
-- ARGV[9..] finish, queues, slots   n_finish triples (id, version, queue: "" = wherever the task
--                          is), then n_queues queue names (1 .. 1024 bytes each, duplicates
--                          ignored), then k slots: "shared": pairs (rank_random, order_random);
--                          "each": quadruples (claimant, duration_ms, rank_random, order_random),
--                          claimant 1 .. 128 bytes, rank_random 0 .. 2^52-1, order_random
--                          0 .. 2^31-1. #ARGV = 8 + 3 n_finish + n_queues + 2k ("shared") or 4k.
--
-- Reply (claimed):   {1, tasks}  1 .. k tasks in slot order (the i-th task is slot i's), each
--                                {queue, id, version, at_ms, claimant, value, created_ms,
--                                 modified_ms, claims, attempt, err}
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
local MAX_CLAIM_SLOTS = 1000
local MAX_ID_BYTES = 64
local MAX_INT32 = 2147483647
local MAX_QUEUE_BYTES = 1024
local MAX_CLAIMANT_BYTES = 128
local MAX_DURATION_MS = 31622400000
-- shared: record-format begin
local RECORD_FORMAT = '>Bi4i8i8i8i4i4I2c0I2c0I4c0'
-- shared: record-format end

if ARGV[2] ~= '3' then
  return redis.error_reply('EQ_CONTRACT claim.lua speaks contract 3, caller sent ' .. tostring(ARGV[2]))
end
if #ARGV < 8 then
  return redis.error_reply('EQ_BADARG claim.lua needs at least 8 ARGV entries, got ' .. #ARGV)
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
-- shared: claimant-and-duration begin
if #claimant > MAX_CLAIMANT_BYTES then
  return bad('claimant is longer than ' .. MAX_CLAIMANT_BYTES .. ' bytes')
end
local duration = parse_integer(ARGV[4], 0, MAX_DURATION_MS)
if duration == nil then
  return bad('duration_ms must be an integer from 0 to ' .. MAX_DURATION_MS .. ', got ' .. tostring(ARGV[4]))
end
-- shared: claimant-and-duration end
local n_finish = parse_integer(ARGV[5], 0, MAX_ITEMS)
if n_finish == nil then return bad('n_finish must be an integer from 0 to ' .. MAX_ITEMS) end
local n_queues = parse_integer(ARGV[6], 1, MAX_QUEUES)
if n_queues == nil then return bad('n_queues must be an integer from 1 to ' .. MAX_QUEUES) end
local k = parse_integer(ARGV[7], 1, MAX_CLAIM_SLOTS)
if k == nil then return bad('k must be an integer from 1 to ' .. MAX_CLAIM_SLOTS) end
local form = ARGV[8]
if form ~= 'shared' and form ~= 'each' then return bad('form must be "shared" or "each"') end
if form == 'shared' and claimant == '' then return bad('claimant must not be empty') end
local slot_width = 2
if form == 'each' then slot_width = 4 end
local expected = 8 + 3 * n_finish + n_queues + slot_width * k
if #ARGV ~= expected then
  return bad('claim.lua needs exactly ' .. expected .. ' ARGV entries for these counts, got ' .. #ARGV)
end

local finish = {}
local finishing = {}
local position = 9
for i = 1, n_finish do
  local item = {id = ARGV[position], version = parse_integer(ARGV[position + 1], 0, MAX_INT32), queue = ARGV[position + 2]}
  position = position + 3
  if item.id == '' or #item.id > MAX_ID_BYTES then
    return bad('finish ' .. i .. ' id must be 1 to ' .. MAX_ID_BYTES .. ' bytes')
  end
  if item.version == nil then return bad('finish ' .. i .. ' version must be an integer from 0 to ' .. MAX_INT32) end
  if #item.queue > MAX_QUEUE_BYTES then
    return bad('finish ' .. i .. ' queue name is longer than ' .. MAX_QUEUE_BYTES .. ' bytes')
  end
  if finishing[item.id] then return bad('task id ' .. item.id .. ' is finished more than once') end
  finishing[item.id] = true
  finish[i] = item
end

local queues = {}
local seen = {}
for _ = 1, n_queues do
  local queue = ARGV[position]
  position = position + 1
  if queue == '' then return bad('queue names must not be empty') end
  if #queue > MAX_QUEUE_BYTES then return bad('queue name is longer than ' .. MAX_QUEUE_BYTES .. ' bytes') end
  if not seen[queue] then
    seen[queue] = true
    queues[#queues + 1] = queue
  end
end

local slots = {}
for i = 1, k do
  -- All four fields in the constructor: a table grown key by key is rehashed on the way.
  local slot = {claimant = claimant, duration = duration, rank_random = false, order_random = false}
  if form == 'each' then
    slot.claimant = ARGV[position]
    slot.duration = parse_integer(ARGV[position + 1], 0, MAX_DURATION_MS)
    position = position + 2
    if slot.claimant == '' or #slot.claimant > MAX_CLAIMANT_BYTES then
      return bad('slot ' .. i .. ' claimant must be 1 to ' .. MAX_CLAIMANT_BYTES .. ' bytes')
    end
    if slot.duration == nil then
      return bad('slot ' .. i .. ' duration_ms must be an integer from 0 to ' .. MAX_DURATION_MS)
    end
  end
  slot.rank_random = parse_integer(ARGV[position], 0, 4503599627370495)
  slot.order_random = parse_integer(ARGV[position + 1], 0, 2147483647)
  position = position + 2
  if slot.rank_random == nil then return bad('slot ' .. i .. ' rank_random must be an integer from 0 to 2^52-1') end
  if slot.order_random == nil then return bad('slot ' .. i .. ' order_random must be an integer from 0 to 2^31-1') end
  slots[i] = slot
end

-- shared: clock begin
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- shared: clock end

-- Finish (delete) checks: reads only, exactly modify.lua's delete rules. One MGET reads every
-- record (the commands of a batch are grouped throughout: one call per kind, not per task).
local finished = {}
-- shared: task-failures begin
local failures = {}
local function fail(kind, reason, id, version, queue, current)
  failures[#failures + 1] = {kind, reason, id, version, queue, current}
end
local function held_by_other(task)
  return task.at > now and task.claimant ~= '' and task.claimant ~= claimant
end
-- shared: task-failures end
-- Task records by ID, in key order: GET for one (cheaper than MGET), one MGET for more.
local function read_records(ids)
  if #ids == 0 then return {} end
  local keys = {}
  for i, id in ipairs(ids) do keys[i] = prefix .. 't:' .. id end
  if #keys == 1 then return {redis.call('GET', keys[1])} end
  return redis.call('MGET', unpack(keys))
end
local finish_ids = {}
for i, item in ipairs(finish) do finish_ids[i] = item.id end
local finish_records = read_records(finish_ids)
for i, item in ipairs(finish) do
  local record = finish_records[i]
  local task = nil
  if record then
    local format_version, version, at, _, _, claims, _, queue, owner = struct.unpack(RECORD_FORMAT, record)
    if format_version ~= 1 then
      return redis.error_reply('EQ_CORRUPT task ' .. item.id .. ' has record format ' .. format_version .. ', this script reads 1')
    end
    task = {id = item.id, version = version, at = at, claims = claims, queue = queue, claimant = owner}
  end
  -- shared: delete-rules begin
  if not task or (item.queue ~= '' and item.queue ~= task.queue) then
    fail('DELETE', 'missing', item.id, item.version, item.queue, task and task.version or -1)
  elseif task.version ~= item.version then
    fail('DELETE', 'mismatch', item.id, item.version, task.queue, task.version)
  elseif held_by_other(task) then
    fail('CLAIM', 'claimed', item.id, item.version, task.queue, task.version)
  -- shared: delete-rules end
  else
    finished[#finished + 1] = task
  end
end
if #failures > 0 then return {-1, failures} end

-- Finished tasks that are available now would otherwise count as claimable: they are
-- left out of the picks below (their deletes are applied only after every read).
local leaving = {}
for _, task in ipairs(finished) do
  if task.at <= now then
    leaving[task.queue] = leaving[task.queue] or {}
    table.insert(leaving[task.queue], task.id)
  end
end

-- Several queues: one ZMSCORE asks the queue index which of them hold any task at all (a
-- queue is listed exactly while it does), so the names of empty queues cost no call each.
-- Dropping them leaves the choice uniform over the queues that have an available task.
local several = #queues > 1
if several then
  local listed = redis.call('ZMSCORE', KEYS[1], unpack(queues))
  local holding = {}
  for i, queue in ipairs(queues) do
    if listed[i] then holding[#holding + 1] = queue end
  end
  queues = holding
  several = #queues > 1
end

-- What this call knows of each queue it looked at: its available tasks not yet picked, and
-- the ranks (in arrival order) of the available ones it must skip: the leaving finished
-- tasks and the tasks earlier slots picked. Nothing is written until every pick is made, so
-- ranks stay valid for the whole call.
local known = {}
local earliest_future = nil
local function look(queue)
  local queue_key = prefix .. 'q:' .. queue
  local state = {key = queue_key, available = 0, skipped = {}}
  local first_at = nil
  if several then
    -- Several queues, often mostly empty: one look tells an empty queue from a busy one.
    local first = redis.call('ZRANGE', queue_key, 0, 0, 'WITHSCORES')
    if first[1] then first_at = tonumber(first[2]) end
  end
  if not several or (first_at ~= nil and first_at <= now) then
    -- One queue: counting is the only look needed when it has available tasks.
    local leaving_here = leaving[queue]
    if leaving_here then
      for _, leaving_id in ipairs(leaving_here) do
        table.insert(state.skipped, redis.call('ZRANK', queue_key, leaving_id))
      end
      table.sort(state.skipped)
    end
    state.available = redis.call('ZCOUNT', queue_key, '-inf', now) - #state.skipped
    if state.available <= 0 then
      -- Nothing available here (or only finished tasks): the next arrival is still news.
      local first = redis.call('ZRANGE', queue_key, '(' .. now, '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES')
      first_at = first[1] and tonumber(first[2]) or nil
    end
  end
  if first_at ~= nil and first_at > now and (earliest_future == nil or first_at < earliest_future) then
    earliest_future = first_at
  end
  known[queue] = state
  return state
end

local picks = {}
local pick_index_keys, pick_slots = {}, {}
local candidates = queues
for _, slot in ipairs(slots) do
  -- Park-Miller generator seeded by the slot's order_random: deterministic for replication,
  -- and not Lua's math.random, which restarts from the same sequence after a server start.
  local state = (slot.order_random % 2147483646) + 1
  -- A uniform draw among the candidate queues; one without an available task left is
  -- dropped for the rest of the call and the draw repeated, so the queue chosen is uniform
  -- over the queues that still have one.
  local chosen = nil
  while #candidates > 0 do
    state = (state * 48271) % 2147483647
    local j = 1 + state % #candidates
    local queue = candidates[j]
    local looked = known[queue] or look(queue)
    if looked.available > 0 then
      chosen = looked
      break
    end
    candidates[j] = candidates[#candidates]
    candidates[#candidates] = nil
  end
  if chosen == nil then break end

  -- Uniform rank among the available tasks not skipped: draw among the remaining count,
  -- then step over the skipped ranks below it. The skipped ranks are sorted, and below the
  -- j-th of them lie skipped[j] - (j - 1) ranks not skipped, a count that never decreases
  -- with j: a binary search finds how many skipped ranks lie below the pick (O(log k)).
  local draw = slot.rank_random % chosen.available
  local skipped = chosen.skipped
  local below, above = 0, #skipped
  while below < above do
    local middle = math.floor((below + above + 1) / 2)
    if skipped[middle] - (middle - 1) <= draw then below = middle else above = middle - 1 end
  end
  local rank = draw + below
  table.insert(skipped, below + 1, rank)
  chosen.available = chosen.available - 1

  local id = redis.call('ZRANGE', chosen.key, rank, rank)[1]
  picks[#picks + 1] = id
  pick_index_keys[#picks] = chosen.key
  pick_slots[#picks] = slot
end

-- The picked tasks' records, in one MGET.
local pick_records = read_records(picks)
for i, id in ipairs(picks) do
  local record = pick_records[i]
  if not record then
    return redis.error_reply('EQ_CORRUPT queue index ' .. pick_index_keys[i] .. ' lists task ' .. id .. ' but its record is missing')
  end
  local format_version, version, _, created, _, claims, attempt, queue, _, err, value_start =
    struct.unpack(RECORD_FORMAT, record)
  if format_version ~= 1 then
    return redis.error_reply('EQ_CORRUPT task ' .. id .. ' has record format ' .. format_version .. ', this script reads 1')
  end
  local slot = pick_slots[i]
  -- One constructor per task (its fields all at once).
  picks[i] = {
    id = id, version = version + 1, at = now + slot.duration, created = created, modified = now,
    claims = claims + 1, attempt = attempt, queue = queue, claimant = slot.claimant, err = err,
    value = string.sub(record, value_start),
  }
end

-- Groups tasks by queue, in first-seen order (replies and replication stay deterministic).
local function by_queue(tasks)
  local order, groups = {}, {}
  for _, task in ipairs(tasks) do
    if not groups[task.queue] then
      groups[task.queue] = {}
      order[#order + 1] = task.queue
    end
    table.insert(groups[task.queue], task)
  end
  return order, groups
end

-- Moves the claims-count histogram of a queue by the given deltas (claims count -> change);
-- a count that drops to 0 leaves the histogram and the order of counts, one that appears
-- joins them.
local function shift_histogram(queue, deltas, counts)
  local histogram_key = prefix .. 'h:' .. queue
  local order_key = prefix .. 'm:' .. queue
  for _, count in ipairs(counts) do
    local delta = deltas[count]
    if delta ~= 0 then
      local now_held = redis.call('HINCRBY', histogram_key, count, delta)
      if now_held <= 0 then
        redis.call('HDEL', histogram_key, count)
        redis.call('ZREM', order_key, count)
      elseif now_held - delta <= 0 then
        redis.call('ZADD', order_key, count, count)
      end
    end
  end
end

-- Moves one task's claims count in the histogram by ``delta`` (shift_histogram for one count).
local function shift_one(queue, count, delta)
  local histogram_key = prefix .. 'h:' .. queue
  local now_held = redis.call('HINCRBY', histogram_key, count, delta)
  if now_held <= 0 then
    redis.call('HDEL', histogram_key, count)
    redis.call('ZREM', prefix .. 'm:' .. queue, count)
  elseif now_held - delta <= 0 then
    redis.call('ZADD', prefix .. 'm:' .. queue, count, count)
  end
end

-- Adds ``by`` to a histogram delta, remembering the order counts first appear in.
local function add_delta(deltas, counts, count, by)
  if deltas[count] == nil then
    deltas[count] = 0
    counts[#counts + 1] = count
  end
  deltas[count] = deltas[count] + by
end

-- A task's record and its reply entry, as modify.lua writes and returns them.
-- shared: task-write begin
local function store(task)
  redis.call('SET', prefix .. 't:' .. task.id, struct.pack(RECORD_FORMAT, 1, task.version, task.at, task.created,
    task.modified, task.claims, task.attempt, #task.queue, task.queue, #task.claimant, task.claimant,
    #task.err, task.err) .. task.value)
end

local function as_reply(task)
  return {task.queue, task.id, task.version, task.at, task.claimant, task.value, task.created, task.modified,
    task.claims, task.attempt, task.err}
end
-- shared: task-write end

-- Writes start here: first the finish deletes.
local function apply_finish()
  if #finished == 0 then return end
  if #finished == 1 then
    -- One task (a worker's usual commit): its own calls, without the grouping tables.
    local task = finished[1]
    local queue_key = prefix .. 'q:' .. task.queue
    redis.call('ZREM', queue_key, task.id)
    if task.claims > 0 then
      if task.claimant ~= '' then redis.call('ZREM', prefix .. 'c:' .. task.queue, task.id) end
      shift_one(task.queue, task.claims, -1)
    end
    if redis.call('ZCARD', queue_key) == 0 then redis.call('ZREM', KEYS[1], task.queue) end
    redis.call('DEL', prefix .. 't:' .. task.id)
    return
  end
  local order, groups = by_queue(finished)
  local record_keys = {}
  for _, queue in ipairs(order) do
    local queue_key = prefix .. 'q:' .. queue
    local ids, held = {}, {}
    local deltas, counts = {}, {}
    for _, task in ipairs(groups[queue]) do
      ids[#ids + 1] = task.id
      record_keys[#record_keys + 1] = prefix .. 't:' .. task.id
      if task.claims > 0 then
        if task.claimant ~= '' then held[#held + 1] = task.id end
        add_delta(deltas, counts, task.claims, -1)
      end
    end
    redis.call('ZREM', queue_key, unpack(ids))
    if #held > 0 then redis.call('ZREM', prefix .. 'c:' .. queue, unpack(held)) end
    shift_histogram(queue, deltas, counts)
    if redis.call('ZCARD', queue_key) == 0 then redis.call('ZREM', KEYS[1], queue) end
  end
  redis.call('DEL', unpack(record_keys))
end

if #picks == 0 then
  apply_finish()
  if earliest_future == nil then return {0, -1} end
  return {0, earliest_future - now}
end

-- All checks are done: the finish deletes, then the claims, one call per kind of write.
apply_finish()
if #picks == 1 then
  -- One task (k = 1, or a batch that found one): its own calls, without the grouping tables.
  local task = picks[1]
  store(task)
  redis.call('ZADD', prefix .. 'q:' .. task.queue, task.at, task.id)
  redis.call('ZADD', prefix .. 'c:' .. task.queue, task.at, task.id)
  if task.claims > 1 then shift_one(task.queue, task.claims - 1, -1) end
  shift_one(task.queue, task.claims, 1)
  return {1, {as_reply(task)}}
end
local tasks = {}
local records = {}
for _, task in ipairs(picks) do
  local queue = task.queue
  records[#records + 1] = prefix .. 't:' .. task.id
  records[#records + 1] = struct.pack(RECORD_FORMAT, 1, task.version, task.at, task.created, task.modified,
    task.claims, task.attempt, #queue, queue, #task.claimant, task.claimant, #task.err, task.err) .. task.value
  tasks[#tasks + 1] = as_reply(task)
end
redis.call('MSET', unpack(records))
local order, groups = by_queue(picks)
for _, queue in ipairs(order) do
  local arrivals = {}
  -- Claim-count histogram behind the exact max_claims of queue stats: each task moves from
  -- its old count to the next.
  local deltas, counts = {}, {}
  for _, task in ipairs(groups[queue]) do
    arrivals[#arrivals + 1] = task.at
    arrivals[#arrivals + 1] = task.id
    if task.claims > 1 then add_delta(deltas, counts, task.claims - 1, -1) end
    add_delta(deltas, counts, task.claims, 1)
  end
  redis.call('ZADD', prefix .. 'q:' .. queue, unpack(arrivals))
  redis.call('ZADD', prefix .. 'c:' .. queue, unpack(arrivals))
  shift_histogram(queue, deltas, counts)
end

return {1, tasks}
