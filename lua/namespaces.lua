-- entroq-redis contract 3: namespaces.lua
-- Lists the doc namespaces that hold docs, in name order, with their doc and claimed counts.
--
-- Read only. Matching works on ranks in the sorted doc namespace index (ZLEXCOUNT per prefix
-- and for `after`, ZRANK per exact name), never a scan of every namespace and never a Lua
-- string comparison, and reads at most limit + 1 names; each listed namespace costs O(log n)
-- (ZCARD and ZCOUNT).
--
-- KEYS[1]  {ns}:queues     queue index; names the namespace slot (must equal ARGV[1] .. "queues")
-- ARGV[1]  key prefix      "{ns}:" (every other key is derived from it, see lua/README.md)
-- ARGV[2]  contract        "3"
-- ARGV[3]  limit           integer 1 .. 1000: doc namespaces per page
-- ARGV[4]  after           "" for the first page, else the last name of the previous page
-- ARGV[5]  n_prefixes      integer 0 .. 1000
-- ARGV[6..] matchers       n_prefixes prefixes, then exact names (the rest of ARGV, at most
--                          1000). With no prefixes and no exact names every doc namespace
--                          matches; otherwise one matches if it starts with any prefix or
--                          equals any exact name.
--
-- Reply:   {more, namespaces}  more = 1 when another page may follow (call again with after =
--          the last name), 0 when the listing is complete. Each doc namespace is
--          {name, num_docs, num_claimed}, all at one reading of the clock:
--            num_docs = its docs; num_claimed = its docs with a claimant and at > now.
-- Errors:  EQ_BADARG <message>, EQ_CONTRACT <message>

local MAX_PAGE = 1000
local MAX_MATCHERS = 1000

if ARGV[2] ~= '3' then
  return redis.error_reply('EQ_CONTRACT namespaces.lua speaks contract 3, caller sent ' .. tostring(ARGV[2]))
end
if #ARGV < 5 then
  return redis.error_reply('EQ_BADARG namespaces.lua needs at least 5 ARGV entries, got ' .. #ARGV)
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

local limit = parse_integer(ARGV[3], 1, MAX_PAGE)
if limit == nil then return bad('limit must be an integer from 1 to ' .. MAX_PAGE) end
local after = ARGV[4]
local n_prefixes = parse_integer(ARGV[5], 0, MAX_MATCHERS)
if n_prefixes == nil or 5 + n_prefixes > #ARGV then return bad('n_prefixes must count the prefixes that follow it') end
if #ARGV - 5 - n_prefixes > MAX_MATCHERS then return bad('at most ' .. MAX_MATCHERS .. ' exact names') end

-- shared: clock begin
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- shared: clock end

local index_key = prefix .. 'dn'
local size = redis.call('ZCARD', index_key)

-- Every name is handled as its rank in the index (all scores 0, so ranks are byte order):
-- names after `after` are the ranks from `lowest` on.
local lowest = 0
if after ~= '' then lowest = redis.call('ZLEXCOUNT', index_key, '-', '[' .. after) end

-- The smallest string greater than every string that starts with `text`, or nil if none.
-- shared: successor begin
local function successor(text)
  local last = #text
  while last > 0 and string.byte(text, last) == 255 do last = last - 1 end
  if last == 0 then return nil end
  return string.sub(text, 1, last - 1) .. string.char(string.byte(text, last) + 1)
end
-- shared: successor end

-- Each prefix is a span of ranks [first, past), each exact name a span of one rank. The spans
-- are merged in rank order and the names read from the merged spans only up to limit + 1, so a
-- call reads at most limit + 1 names however many matchers overlap.
local spans = {}
if #ARGV == 5 then
  spans[1] = {lowest, size}
else
  for i = 6, 5 + n_prefixes do
    local first = math.max(lowest, redis.call('ZLEXCOUNT', index_key, '-', '(' .. ARGV[i]))
    local stop = successor(ARGV[i])
    local past = size
    if stop then past = redis.call('ZLEXCOUNT', index_key, '-', '(' .. stop) end
    if first < past then spans[#spans + 1] = {first, past} end
  end
  for i = 6 + n_prefixes, #ARGV do
    local rank = redis.call('ZRANK', index_key, ARGV[i])
    if rank and rank >= lowest then spans[#spans + 1] = {rank, rank + 1} end
  end
end
table.sort(spans, function(a, b) return a[1] < b[1] end)

local names = {}
local piece_start, piece_past = nil, nil
local function read_piece()
  if piece_start == nil or #names > limit then return end
  local last = math.min(piece_past, piece_start + limit + 1 - #names) - 1
  for _, name in ipairs(redis.call('ZRANGE', index_key, piece_start, last)) do names[#names + 1] = name end
end
for _, span in ipairs(spans) do
  if piece_past ~= nil and span[1] <= piece_past then
    piece_past = math.max(piece_past, span[2])
  else
    read_piece()
    piece_start, piece_past = span[1], span[2]
  end
end
read_piece()

local more = 0
if #names > limit then more = 1 end

local namespaces = {}
for i = 1, math.min(limit, #names) do
  local name = names[i]
  local num_docs = redis.call('ZCARD', prefix .. 'dk:' .. name)
  local claimed = redis.call('ZCOUNT', prefix .. 'dc:' .. name, '(' .. now, '+inf')
  namespaces[i] = {name, num_docs, claimed}
end
return {more, namespaces}
