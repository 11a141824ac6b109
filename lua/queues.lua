-- entroq-redis contract 3: queues.lua
-- Lists non-empty queues in name order, with their sizes or their full stats.
--
-- Read only. Matching uses the sorted queue index (ZRANGE BYLEX per prefix, ZSCORE per
-- exact name), never a scan of every queue; each queue's stats cost O(log n).
--
-- KEYS[1]  {ns}:queues     queue index; names the namespace slot (must equal ARGV[1] .. "queues")
-- ARGV[1]  key prefix      "{ns}:" (every other key is derived from it, see lua/README.md)
-- ARGV[2]  contract        "3"
-- ARGV[3]  detail          "size" = {name, num_tasks}; "stats" = full stats (below)
-- ARGV[4]  limit           integer 1 .. 1000: queues per page
-- ARGV[5]  after           "" for the first page, else the last name of the previous page
-- ARGV[6]  n_prefixes      integer 0 .. 1000
-- ARGV[7..] matchers       n_prefixes prefixes, then exact names (the rest of ARGV, at most 1000).
--          With no prefixes and no exact names every queue matches; otherwise a queue matches
--          if it starts with any prefix or equals any exact name. At most 1000 of each.
--
-- Reply:   {more, queues}  more = 1 when another page may follow (call again with after =
--          the last name), 0 when the listing is complete. Each queue is
--          {name, num_tasks} for "size", or for "stats"
--          {name, num_tasks, num_available, num_claimed, num_future, max_claims}:
--            num_available = at <= now; num_claimed = at > now, claims > 0 and a claimant;
--            num_future = the other tasks with at > now; max_claims = largest claims count.
-- Errors:  EQ_BADARG <message>, EQ_CONTRACT <message>

local MAX_PAGE = 1000
local MAX_MATCHERS = 1000

if ARGV[2] ~= '3' then
  return redis.error_reply('EQ_CONTRACT queues.lua speaks contract 3, caller sent ' .. tostring(ARGV[2]))
end
if #ARGV < 6 then
  return redis.error_reply('EQ_BADARG queues.lua needs at least 6 ARGV entries, got ' .. #ARGV)
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

local detail = ARGV[3]
if detail ~= 'size' and detail ~= 'stats' then return bad('detail must be "size" or "stats"') end
local limit = parse_integer(ARGV[4], 1, MAX_PAGE)
if limit == nil then return bad('limit must be an integer from 1 to ' .. MAX_PAGE) end
local after = ARGV[5]
local n_prefixes = parse_integer(ARGV[6], 0, MAX_MATCHERS)
if n_prefixes == nil or 6 + n_prefixes > #ARGV then return bad('n_prefixes must count the prefixes that follow it') end
if #ARGV - 6 - n_prefixes > MAX_MATCHERS then return bad('at most ' .. MAX_MATCHERS .. ' exact names') end

-- Byte order, as ZRANGE BYLEX sorts. Lua's own < follows the server's collation locale.
local function before(a, b)
  local shorter = math.min(#a, #b)
  for i = 1, shorter do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- The smallest string greater than every string that starts with `text`, or nil if none.
-- shared: successor begin
local function successor(text)
  local last = #text
  while last > 0 and string.byte(text, last) == 255 do last = last - 1 end
  if last == 0 then return nil end
  return string.sub(text, 1, last - 1) .. string.char(string.byte(text, last) + 1)
end
-- shared: successor end

local lower = '-'
if after ~= '' then lower = '(' .. after end

local candidates = {}
local seen = {}
local function consider(name)
  if not seen[name] and (after == '' or before(after, name)) then
    seen[name] = true
    candidates[#candidates + 1] = name
  end
end

if #ARGV == 6 then
  for _, name in ipairs(redis.call('ZRANGE', KEYS[1], lower, '+', 'BYLEX', 'LIMIT', 0, limit + 1)) do
    consider(name)
  end
else
  for i = 7, 6 + n_prefixes do
    local start = '[' .. ARGV[i]
    if after ~= '' and not before(after, ARGV[i]) then start = lower end
    local stop = successor(ARGV[i])
    local finish = '+'
    if stop then finish = '(' .. stop end
    for _, name in ipairs(redis.call('ZRANGE', KEYS[1], start, finish, 'BYLEX', 'LIMIT', 0, limit + 1)) do
      consider(name)
    end
  end
  for i = 7 + n_prefixes, #ARGV do
    if redis.call('ZSCORE', KEYS[1], ARGV[i]) then consider(ARGV[i]) end
  end
end
table.sort(candidates, before)

local more = 0
if #candidates > limit then more = 1 end

local now = nil
if detail == 'stats' then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
end

local queues = {}
for i = 1, math.min(limit, #candidates) do
  local name = candidates[i]
  local queue_key = prefix .. 'q:' .. name
  local size = redis.call('ZCARD', queue_key)
  if detail == 'size' then
    queues[i] = {name, size}
  else
    local available = redis.call('ZCOUNT', queue_key, '-inf', now)
    local claimed = redis.call('ZCOUNT', prefix .. 'c:' .. name, '(' .. now, '+inf')
    local top = redis.call('ZRANGE', prefix .. 'm:' .. name, -1, -1)
    local max_claims = 0
    if top[1] then max_claims = tonumber(top[1]) end
    queues[i] = {name, size, available, claimed, size - available - claimed, max_claims}
  end
end
return {more, queues}
