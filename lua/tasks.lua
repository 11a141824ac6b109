-- entroq-redis contract 3: tasks.lua
-- Lists tasks: one page of a queue in arrival order, or given task IDs from any queue.
--
-- Read only. A queue listing is paged by rank: each call looks at no more than `limit`
-- entries of the queue, so a call stays short however large the queue is.
--
-- KEYS[1]  {ns}:queues     queue index; names the namespace slot (must equal ARGV[1] .. "queues")
-- ARGV[1]  key prefix      "{ns}:" (every other key is derived from it, see lua/README.md)
-- ARGV[2]  contract        "3"
-- ARGV[3]  claimant        "" = no filter; otherwise only tasks held by this claimant or available
--                          now (at <= now) are listed
-- ARGV[4]  queue           "" = any queue (IDs mode only)
-- ARGV[5]  limit           integer 1 .. 1000: entries of the queue to look at (queue mode)
-- ARGV[6]  cursor          integer rank to start from, 0 for the first page (queue mode)
-- ARGV[7]  omit_values     "1" = leave values out (sent as empty strings), "0" = include them
-- ARGV[8..] ids            0 .. 1000 task IDs; when present the queue is a filter, unknown IDs
--                          are skipped, and limit and cursor are not used (send valid values,
--                          e.g. 1 and 0: they are still checked)
--
-- Reply:   {next_cursor, tasks}  next_cursor = -1 when the listing is complete; each task
--          {queue, id, version, at_ms, claimant, value, created_ms, modified_ms, claims, attempt, err}
-- Errors:  EQ_BADARG <message>, EQ_CONTRACT <message>, EQ_CORRUPT <message>

local MAX_PAGE = 1000
local MAX_QUEUE_BYTES = 1024
-- shared: record-format begin
local RECORD_FORMAT = '>Bi4i8i8i8i4i4I2c0I2c0I4c0'
-- shared: record-format end

if ARGV[2] ~= '3' then
  return redis.error_reply('EQ_CONTRACT tasks.lua speaks contract 3, caller sent ' .. tostring(ARGV[2]))
end
if #ARGV < 7 then
  return redis.error_reply('EQ_BADARG tasks.lua needs at least 7 ARGV entries, got ' .. #ARGV)
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
local queue = ARGV[4]
if queue == nil or #queue > MAX_QUEUE_BYTES then return bad('queue name is longer than ' .. MAX_QUEUE_BYTES .. ' bytes') end
local limit = parse_integer(ARGV[5], 1, MAX_PAGE)
if limit == nil then return bad('limit must be an integer from 1 to ' .. MAX_PAGE) end
local cursor = parse_integer(ARGV[6], 0, 4503599627370495)
if cursor == nil then return bad('cursor must be a non-negative integer') end
local omit_values = ARGV[7]
if omit_values ~= '0' and omit_values ~= '1' then return bad('omit_values must be "0" or "1"') end
if #ARGV - 7 > MAX_PAGE then return bad('at most ' .. MAX_PAGE .. ' task ids per call') end

-- shared: clock begin
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- shared: clock end

local tasks = {}
local function add(id, record)
  local format_version, version, at, created, modified, claims, attempt, task_queue, owner, err, value_start =
    struct.unpack(RECORD_FORMAT, record)
  if format_version ~= 1 then
    error(redis.error_reply('EQ_CORRUPT task ' .. id .. ' has record format ' .. format_version .. ', this script reads 1'))
  end
  if queue ~= '' and task_queue ~= queue then return end
  if claimant ~= '' and owner ~= claimant and at > now then return end
  local value = ''
  if omit_values == '0' then value = string.sub(record, value_start) end
  tasks[#tasks + 1] = {task_queue, id, version, at, owner, value, created, modified, claims, attempt, err}
end

if #ARGV > 7 then
  for i = 8, #ARGV do
    local record = redis.call('GET', prefix .. 't:' .. ARGV[i])
    if record then add(ARGV[i], record) end
  end
  return {-1, tasks}
end

if queue == '' then return {-1, tasks} end

local ids = redis.call('ZRANGE', prefix .. 'q:' .. queue, cursor, cursor + limit - 1)
for _, id in ipairs(ids) do
  local record = redis.call('GET', prefix .. 't:' .. id)
  if not record then
    return redis.error_reply('EQ_CORRUPT queue ' .. queue .. ' lists task ' .. id .. ' but its record is missing')
  end
  add(id, record)
end
if #ids < limit then return {-1, tasks} end
return {cursor + limit, tasks}
