-- entroq-redis contract 3: docs.lua
-- Lists the docs of one doc namespace: a page of a key range in (key, secondary key, id)
-- order, or given doc IDs in the order asked.
--
-- Read only. A range listing is paged by offset within the range: each call finds the
-- range's ends by rank (ZLEXCOUNT, O(log n)) and reads at most `limit` docs from there, so
-- a call stays short however large the namespace or the offset is.
--
-- KEYS[1]  {ns}:queues     queue index; names the namespace slot (must equal ARGV[1] .. "queues")
-- ARGV[1]  key prefix      "{ns}:" (every other key is derived from it, see lua/README.md)
-- ARGV[2]  contract        "3"
-- ARGV[3]  namespace       the doc namespace, 1 .. 1024 bytes
-- ARGV[4]  key_start       at most 1024 bytes: the range's first key ("" = from the first doc)
-- ARGV[5]  key_end         at most 1024 bytes: the first key past the range ("" = no bound)
-- ARGV[6]  limit           integer 1 .. 1000: docs per page (range mode)
-- ARGV[7]  cursor          integer offset into the range, 0 for the first page (range mode)
-- ARGV[8]  omit_values     "1" = leave contents out (sent as empty strings), "0" = include them
-- ARGV[9..] ids            0 .. 1000 doc IDs (each at most 256 bytes); when present this is ID
--                          mode: those docs in the order given, unknown IDs skipped, and the
--                          range, limit and cursor are not used (they are still checked)
--
-- Reply:   {next_cursor, docs}  next_cursor = -1 when the listing is complete; each doc
--          {namespace, id, version, claimant, at_ms, key, secondary_key, content, created_ms, modified_ms}
-- Errors:  EQ_BADARG <message>, EQ_CONTRACT <message>, EQ_CORRUPT <message>

local MAX_PAGE = 1000
local MAX_DOC_NAMESPACE_BYTES = 1024
local MAX_DOC_ID_BYTES = 256
local MAX_DOC_KEY_BYTES = 1024
-- shared: doc-record-format begin
local DOC_RECORD_FORMAT = '>Bi4i8i8i8I2c0I2c0I2c0'
-- shared: doc-record-format end
-- The longest a doc record's fields before the content can be: 29 fixed bytes, then the key
-- and secondary key (2 + 1024 each) and the claimant (2 + 128). Without contents only this
-- much of a record is read (GETRANGE), so omit_values does not copy the contents.
local DOC_HEADER_BYTES = 2211

if ARGV[2] ~= '3' then
  return redis.error_reply('EQ_CONTRACT docs.lua speaks contract 3, caller sent ' .. tostring(ARGV[2]))
end
if #ARGV < 8 then
  return redis.error_reply('EQ_BADARG docs.lua needs at least 8 ARGV entries, got ' .. #ARGV)
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

local namespace = ARGV[3]
if namespace == '' or #namespace > MAX_DOC_NAMESPACE_BYTES then
  return bad('doc namespace must be 1 to ' .. MAX_DOC_NAMESPACE_BYTES .. ' bytes')
end
local key_start = ARGV[4]
local key_end = ARGV[5]
if #key_start > MAX_DOC_KEY_BYTES or #key_end > MAX_DOC_KEY_BYTES then
  return bad('key_start and key_end must be at most ' .. MAX_DOC_KEY_BYTES .. ' bytes')
end
local limit = parse_integer(ARGV[6], 1, MAX_PAGE)
if limit == nil then return bad('limit must be an integer from 1 to ' .. MAX_PAGE) end
local cursor = parse_integer(ARGV[7], 0, 4503599627370495)
if cursor == nil then return bad('cursor must be a non-negative integer') end
local omit_values = ARGV[8]
if omit_values ~= '0' and omit_values ~= '1' then return bad('omit_values must be "0" or "1"') end
if #ARGV - 8 > MAX_PAGE then return bad('at most ' .. MAX_PAGE .. ' doc ids per call') end
for i = 9, #ARGV do
  if #ARGV[i] > MAX_DOC_ID_BYTES then return bad('doc ids must be at most ' .. MAX_DOC_ID_BYTES .. ' bytes') end
end

-- Doc records are keyed by the length-prefixed namespace, then the ID (lua/README.md section 2).
local record_prefix = prefix .. 'd:' .. #namespace .. ':' .. namespace

-- A record, or nil when there is none (GETRANGE answers "" for a missing key; a record never
-- is empty).
local function read(record_key)
  if omit_values == '1' then
    local head = redis.call('GETRANGE', record_key, 0, DOC_HEADER_BYTES - 1)
    if head == '' then return nil end
    return head
  end
  local record = redis.call('GET', record_key)
  if not record then return nil end
  return record
end

local docs = {}
local function add(id, record)
  -- The format byte first: a record of another format may not even unpack.
  local format_version = string.byte(record, 1)
  if format_version ~= 2 then
    error(redis.error_reply('EQ_CORRUPT doc ' .. id .. ' has record format ' .. tostring(format_version) .. ', this script reads 2'))
  end
  local _, version, at, created, modified, key, secondary_key, owner, content_start =
    struct.unpack(DOC_RECORD_FORMAT, record)
  local content = ''
  if omit_values == '0' then content = string.sub(record, content_start) end
  docs[#docs + 1] = {namespace, id, version, owner, at, key, secondary_key, content, created, modified}
end

if #ARGV > 8 then
  for i = 9, #ARGV do
    local record = read(record_prefix .. ARGV[i])
    if record then add(ARGV[i], record) end
  end
  return {-1, docs}
end

-- The index member of a doc is sort_part(key) .. sort_part(secondary_key) .. id, where
-- sort_part turns each NUL into NUL 0xFF and ends with NUL 0x01: order-preserving and
-- self-delimiting, so the byte order of members is the (key, secondary key, id) order and
-- "key >= k" is "member >= sort_part(k)".
-- (A plain find first: gsub costs tens of microseconds on a 1 KiB key even without a NUL.)
-- shared: sort-part begin
local function sort_part(text)
  if string.find(text, '\0', 1, true) then text = string.gsub(text, '%z', '\0\255') end
  return text .. '\0\1'
end
-- shared: sort-part end

local index_key = prefix .. 'dk:' .. namespace
local first = 0
if key_start ~= '' then first = redis.call('ZLEXCOUNT', index_key, '-', '(' .. sort_part(key_start)) end
local stop
if key_end ~= '' then
  stop = redis.call('ZLEXCOUNT', index_key, '-', '(' .. sort_part(key_end))
else
  stop = redis.call('ZCARD', index_key)
end

local from = first + cursor
local to = math.min(from + limit, stop)
if from >= to then return {-1, docs} end
local members = redis.call('ZRANGE', index_key, from, to - 1)
for _, member in ipairs(members) do
  -- The ID follows the second part terminator (NUL 0x01); inside a part every NUL is
  -- followed by 0xFF, so the first two terminators end the key and the secondary key.
  local key_stop = string.find(member, '\0\1', 1, true)
  local secondary_stop = key_stop and string.find(member, '\0\1', key_stop + 2, true)
  if not secondary_stop then
    return redis.error_reply('EQ_CORRUPT doc namespace ' .. namespace .. ' has a malformed index entry')
  end
  local id = string.sub(member, secondary_stop + 2)
  local record = read(record_prefix .. id)
  if not record then
    return redis.error_reply('EQ_CORRUPT doc namespace ' .. namespace .. ' lists doc ' .. id .. ' but its record is missing')
  end
  add(id, record)
end
if to < stop then return {cursor + limit, docs} end
return {-1, docs}
