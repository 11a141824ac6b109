-- entroq-redis contract 3: claim_docs.lua
-- Claims every doc of one (doc namespace, key), all or nothing, under a lease.
--
-- EntroQ's ClaimDocs: if any of the docs is held by another claimant, or the key's doc set is
-- (a set lock, see claim_doc_sets.lua), nothing is claimed and the reply names each of them.
-- Otherwise each doc gets version + 1, the caller as claimant, at = now + duration and
-- modified = now. A caller may re-claim docs it holds. The set's lock version is not touched;
-- when the key's set has a lock record, each doc's new version is max(version, lock version)
-- + 1 instead, and the record's highest member version follows (lua/README.md section 6,
-- *Why no stale version commits*).
-- Cost: O(log n + m) for m docs of the key, and m is at most 1000.
--
-- KEYS[1]  {ns}:queues     queue index; names the namespace slot (must equal ARGV[1] .. "queues")
-- ARGV[1]  key prefix      "{ns}:" (every other key is derived from it, see lua/README.md)
-- ARGV[2]  contract        "3"
-- ARGV[3]  claimant        non-empty, at most 128 bytes
-- ARGV[4]  duration_ms     integer, 0 .. 31622400000 (lease length; 0 = claimable again at once)
-- ARGV[5]  namespace       the doc namespace, 1 .. 1024 bytes
-- ARGV[6]  key             the primary key, 1 .. 1024 bytes; at most 1000 docs may have it
--
-- Reply (claimed):   {1, docs}  the claimed docs sorted by (secondary key, id), each
--                               {namespace, id, version, claimant, at_ms, key, secondary_key,
--                                content, created_ms, modified_ms}; an empty list when no
--                                doc has the key
-- Reply (refused):   {0, failures}  nothing written; one failure per doc held by another
--                                   claimant, and one for the key's set if another holds it, as
--                                   {kind, reason, namespace, id, version, current_version, key}
--                                   with kind CLAIM, reason claimed, id "" for the set
-- Errors:            EQ_BADARG <message>  (bad input, or more than 1000 docs have the key)
--                    EQ_CONTRACT <message> (wrong contract version or key prefix)
--                    EQ_CORRUPT <message>  (a record has a format this script cannot read, or
--                                           the key's index lists a doc whose record is missing)

local MAX_PAGE = 1000
local MAX_CLAIMANT_BYTES = 128
local MAX_DURATION_MS = 31622400000
local MAX_DOC_NAMESPACE_BYTES = 1024
local MAX_DOC_KEY_BYTES = 1024
-- shared: doc-record-format begin
local DOC_RECORD_FORMAT = '>Bi4i8i8i8I2c0I2c0I2c0'
-- shared: doc-record-format end
-- shared: set-record-format begin
local SET_RECORD_FORMAT = '>Bi4i4i8I2c0'
-- shared: set-record-format end

if ARGV[2] ~= '3' then
  return redis.error_reply('EQ_CONTRACT claim_docs.lua speaks contract 3, caller sent ' .. tostring(ARGV[2]))
end
if #ARGV ~= 6 then
  return redis.error_reply('EQ_BADARG claim_docs.lua needs exactly 6 ARGV entries, got ' .. #ARGV)
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
local namespace = ARGV[5]
if namespace == '' or #namespace > MAX_DOC_NAMESPACE_BYTES then
  return bad('doc namespace must be 1 to ' .. MAX_DOC_NAMESPACE_BYTES .. ' bytes')
end
local key = ARGV[6]
if key == '' or #key > MAX_DOC_KEY_BYTES then
  return bad('a doc claim needs a key of 1 to ' .. MAX_DOC_KEY_BYTES .. ' bytes')
end

-- shared: clock begin
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- shared: clock end

-- Held: a claimant, not the caller, and a lease that has not run out.
local function held_by_other(owner, at)
  return owner ~= '' and owner ~= claimant and at > now
end

local failures = {}

-- The key's set lock (claim_doc_sets.lua) protects every member against other claimants.
local set_key = prefix .. 'ds:' .. #namespace .. ':' .. namespace .. key
local record = redis.call('GET', set_key)
local lock = nil
if record then
  -- The format byte first: a record of another format may not even unpack.
  local format_version = string.byte(record, 1)
  if format_version ~= 4 then
    return redis.error_reply('EQ_CORRUPT set lock record ' .. set_key .. ' has format ' .. tostring(format_version) .. ', this script reads 4')
  end
  local _, version, highest, at, owner =
    struct.unpack(SET_RECORD_FORMAT, record)
  lock = {version = version, highest = highest, at = at, claimant = owner}
  if held_by_other(owner, at) then
    local current = version
    failures[#failures + 1] = {'CLAIM', 'claimed', namespace, '', version, current, key}
  end
end

-- Every doc of the key: index members from sort_part(key) up to (not including) the same
-- bytes with the final 0x01 raised to 0x02 (see docs.lua for the member encoding).
local index_key = prefix .. 'dk:' .. namespace
local part = key
if string.find(part, '\0', 1, true) then part = string.gsub(part, '%z', '\0\255') end
part = part .. '\0\1'
local members = redis.call('ZRANGE', index_key, '[' .. part, '(' .. string.sub(part, 1, -2) .. '\2', 'BYLEX',
  'LIMIT', 0, MAX_PAGE + 1)
if #members > MAX_PAGE then
  return bad('more than ' .. MAX_PAGE .. ' docs have this key; claim fewer at a time')
end

local record_prefix = prefix .. 'd:' .. #namespace .. ':' .. namespace
local found = {}
for i, member in ipairs(members) do
  -- After sort_part(key), the member holds sort_part(secondary key) and then the ID.
  local secondary_stop = string.find(member, '\0\1', #part + 1, true)
  if not secondary_stop then
    return redis.error_reply('EQ_CORRUPT doc namespace ' .. namespace .. ' has a malformed index entry')
  end
  local id = string.sub(member, secondary_stop + 2)
  local record = redis.call('GET', record_prefix .. id)
  if not record then
    return redis.error_reply('EQ_CORRUPT doc namespace ' .. namespace .. ' lists doc ' .. id .. ' but its record is missing')
  end
  -- The format byte first: a record of another format may not even unpack.
  local format_version = string.byte(record, 1)
  if format_version ~= 2 then
    return redis.error_reply('EQ_CORRUPT doc ' .. id .. ' has record format ' .. tostring(format_version) .. ', this script reads 2')
  end
  local _, version, at, created, modified, doc_key, secondary_key, owner, content_start =
    struct.unpack(DOC_RECORD_FORMAT, record)
  if held_by_other(owner, at) then
    local current = version
    failures[#failures + 1] = {'CLAIM', 'claimed', namespace, id, version, current, key}
  end
  found[i] = {id = id, version = version, created = created, key = doc_key, secondary_key = secondary_key,
    content = string.sub(record, content_start)}
end
if #failures > 0 then return {0, failures} end

-- One read of the only other key written below, before the first write: a key of another
-- type there (which only a foreign writer leaves) stops the script now instead of half way.
local claimed_key = prefix .. 'dc:' .. namespace
redis.call('ZSCORE', claimed_key, '')

-- All checks are done; writes start here.
local at = now + duration
local modified = now
local docs = {}
for i, doc in ipairs(found) do
  -- Above the lock of the key's set, when it has one: a claim is a write of the doc.
  local version = (lock and math.max(doc.version, lock.version) or doc.version) + 1
  if lock and version > lock.highest then lock.highest = version end
  redis.call('SET', record_prefix .. doc.id, struct.pack(DOC_RECORD_FORMAT, 2, version, at, doc.created, modified,
    #doc.key, doc.key, #doc.secondary_key, doc.secondary_key, #claimant, claimant) .. doc.content)
  redis.call('ZADD', claimed_key, at, doc.id)
  docs[i] = {namespace, doc.id, version, claimant, at, doc.key, doc.secondary_key, doc.content, doc.created,
    modified}
end
if lock and #found > 0 then
  redis.call('SET', set_key, struct.pack(SET_RECORD_FORMAT, 4, lock.version, lock.highest, lock.at, #lock.claimant,
    lock.claimant))
end
return {1, docs}
