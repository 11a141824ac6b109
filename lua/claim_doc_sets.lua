-- entroq-redis contract 3: claim_doc_sets.lua
-- Claims the locks of doc sets, all or nothing: a set is every doc of one (doc namespace, key).
--
-- EntroQ 0.15's set claims. A set's lock is a record of its own (version, claimant, at_ms),
-- created by the first claim and kept for good. A set cannot be claimed while another
-- claimant holds its lock or any of its member docs; a held lock protects every member (and
-- the key itself) against other claimants' inserts, changes, deletes and key claims. Member
-- docs are read, never written. A lock's new version is above every member's version (the
-- members read here and the highest member version its record keeps, lua/README.md section
-- 3), so no version a member ever had names the set. With a task to match, every lock ends
-- when that task's lease
-- does (at = the task's at_ms) and the task must be held by the caller. Renewal and release
-- are lease changes of the set in modify.lua. Cost: O(s log n + m) for s sets and m members.
--
-- KEYS[1]  {ns}:queues     queue index; names the namespace slot (must equal ARGV[1] .. "queues")
-- ARGV[1]  key prefix      "{ns}:" (every other key is derived from it, see lua/README.md)
-- ARGV[2]  contract        "3"
-- ARGV[3]  claimant        non-empty, at most 128 bytes
-- ARGV[4]  duration_ms     integer, 0 .. 31622400000 (lease length; not used with a task to match)
-- ARGV[5]  task_id         "" = no task to match; else the task (1 .. 64 bytes) whose lease the
--                          locks follow
-- ARGV[6]  task_version    integer 0 .. 2^31-1: the task's version (send 0 without a task)
-- ARGV[7]  task_queue      at most 1024 bytes: the queue the task must be in ("" = any queue)
-- ARGV[8]  n_sets          integer 1 .. 1000
-- ARGV[9..] sets           n_sets triples namespace (1 .. 1024 bytes), key (1 .. 1024 bytes),
--                          omit_members ("1" = do not return the set's member docs, "0" =
--                          return them); no set twice; #ARGV must be exactly 8 + 3 n_sets. The
--                          members of all sets together (omitted or not) are at most 1000.
--
-- Reply (claimed):   {1, sets, docs}  sets: one set reference per set, in request order,
--                    {namespace, id, version, claimant, at_ms, key, secondary_key, content,
--                     created_ms, modified_ms} with id, secondary_key and content "" and the
--                    times 0; docs: the members of the sets without omit_members, set by set
--                    in request order, each set's by (secondary key, id), as docs in that form
-- Reply (refused):   {0, task_failures, doc_failures}  nothing written. task_failures: the task
--                    to match as {kind, reason, id, version, queue, current_version}, kind
--                    DEPEND, reason missing, mismatch, or claimed (not held by the caller now);
--                    doc_failures: {kind, reason, namespace, id, version, current_version, key}
--                    with kind CLAIM, reason claimed, for each lock (id "") and member doc
--                    held by another claimant
-- Errors:            EQ_BADARG <message>  (bad input; nothing written)
--                    EQ_CONTRACT <message> (wrong contract version or key prefix)
--                    EQ_CORRUPT <message>  (a record has a format this script cannot read, or
--                                           a doc index lists a doc whose record is missing)

local MAX_PAGE = 1000
local MAX_DOC_SETS = 1000
local MAX_ID_BYTES = 64
local MAX_QUEUE_BYTES = 1024
local MAX_CLAIMANT_BYTES = 128
local MAX_DURATION_MS = 31622400000
local MAX_INT32 = 2147483647
local MAX_DOC_NAMESPACE_BYTES = 1024
local MAX_DOC_KEY_BYTES = 1024
-- shared: record-format begin
local RECORD_FORMAT = '>Bi4i8i8i8i4i4I2c0I2c0I4c0'
-- shared: record-format end
-- shared: doc-record-format begin
local DOC_RECORD_FORMAT = '>Bi4i8i8i8I2c0I2c0I2c0'
-- shared: doc-record-format end
-- shared: set-record-format begin
local SET_RECORD_FORMAT = '>Bi4i4i8I2c0'
-- shared: set-record-format end
-- The longest a doc record's fields before the content can be (docs.lua): members of a set
-- with omit_members are checked on this much of their record, without copying contents.
local DOC_HEADER_BYTES = 2211

if ARGV[2] ~= '3' then
  return redis.error_reply('EQ_CONTRACT claim_doc_sets.lua speaks contract 3, caller sent ' .. tostring(ARGV[2]))
end
if #ARGV < 8 then
  return redis.error_reply('EQ_BADARG claim_doc_sets.lua needs at least 8 ARGV entries, got ' .. #ARGV)
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
local task_id = ARGV[5]
if #task_id > MAX_ID_BYTES then return bad('task id must be at most ' .. MAX_ID_BYTES .. ' bytes') end
local task_version = parse_integer(ARGV[6], 0, MAX_INT32)
if task_version == nil then return bad('task_version must be an integer from 0 to ' .. MAX_INT32) end
local task_queue = ARGV[7]
if #task_queue > MAX_QUEUE_BYTES then return bad('queue name is longer than ' .. MAX_QUEUE_BYTES .. ' bytes') end
local n_sets = parse_integer(ARGV[8], 1, MAX_DOC_SETS)
if n_sets == nil then return bad('n_sets must be an integer from 1 to ' .. MAX_DOC_SETS) end
if #ARGV ~= 8 + 3 * n_sets then
  return bad('ARGV must hold exactly 8 + 3 * n_sets entries, got ' .. #ARGV .. ' for ' .. n_sets .. ' sets')
end

local wanted = {}
local named = {}
local position = 9
for _ = 1, n_sets do
  local namespace, key, omit_members = ARGV[position], ARGV[position + 1], ARGV[position + 2]
  position = position + 3
  if namespace == '' or #namespace > MAX_DOC_NAMESPACE_BYTES then
    return bad('doc namespace must be 1 to ' .. MAX_DOC_NAMESPACE_BYTES .. ' bytes')
  end
  if key == '' or #key > MAX_DOC_KEY_BYTES then
    return bad('a doc set needs a key of 1 to ' .. MAX_DOC_KEY_BYTES .. ' bytes')
  end
  if omit_members ~= '0' and omit_members ~= '1' then return bad('omit_members must be "0" or "1"') end
  local record_key = prefix .. 'ds:' .. #namespace .. ':' .. namespace .. key
  if named[record_key] then return bad('a doc set is named twice: key ' .. key .. ' in ' .. namespace) end
  named[record_key] = true
  wanted[#wanted + 1] = {namespace = namespace, key = key, omit = omit_members == '1', record_key = record_key}
end

-- shared: clock begin
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- shared: clock end

-- Held: a claimant, not the caller, and a lease that has not run out.
local function held_by_other(owner, at)
  return owner ~= '' and owner ~= claimant and at > now
end

-- The task to match: it must exist (in the queue named, if one is) at that version and be held
-- by the caller now. It is reported as modify.lua reports a failed depend.
local task_failures = {}
local function task_fail(reason, id, version, queue, current)
  task_failures[1] = {'DEPEND', reason, id, version, queue, current}
end
local at = now + duration
if task_id ~= '' then
  local record = redis.call('GET', prefix .. 't:' .. task_id)
  if not record then
    task_fail('missing', task_id, task_version, task_queue, -1)
  else
    -- The format byte first: a record of another format may not even unpack.
    local format_version = string.byte(record, 1)
    if format_version ~= 1 then
      return redis.error_reply('EQ_CORRUPT task ' .. task_id .. ' has record format ' .. tostring(format_version) .. ', this script reads 1')
    end
    local _, version, task_at, created, modified, claims, attempt, queue, owner =
      struct.unpack(RECORD_FORMAT, record)
    if task_queue ~= '' and task_queue ~= queue then
      task_fail('missing', task_id, task_version, task_queue, version)
    elseif version ~= task_version then
      task_fail('mismatch', task_id, task_version, queue, version)
    elseif owner ~= claimant or task_at <= now then
      task_fail('claimed', task_id, task_version, queue, version)
    else
      at = task_at
    end
  end
end

-- Each set: its lock, then its members (index members from sort_part(key) up to the same
-- bytes with the final 0x01 raised to 0x02; see docs.lua for the member encoding).
local doc_failures = {}
local total = 0
for _, set in ipairs(wanted) do
  local lock = redis.call('GET', set.record_key)
  set.version, set.highest, set.at, set.claimant = 0, 0, 0, ''
  if lock then
    -- The format byte first: a record of another format may not even unpack.
    local format_version = string.byte(lock, 1)
    if format_version ~= 4 then
      return redis.error_reply('EQ_CORRUPT set lock record ' .. set.record_key .. ' has format ' .. tostring(format_version) .. ', this script reads 4')
    end
    local _, version, highest, lock_at, owner =
      struct.unpack(SET_RECORD_FORMAT, lock)
    set.version, set.highest, set.at, set.claimant = version, highest, lock_at, owner
    if held_by_other(owner, lock_at) then
      local current = version
      doc_failures[#doc_failures + 1] = {'CLAIM', 'claimed', set.namespace, '', version, current, set.key}
    end
  end
  local part = set.key
  if string.find(part, '\0', 1, true) then part = string.gsub(part, '%z', '\0\255') end
  part = part .. '\0\1'
  local members = redis.call('ZRANGE', prefix .. 'dk:' .. set.namespace, '[' .. part,
    '(' .. string.sub(part, 1, -2) .. '\2', 'BYLEX', 'LIMIT', 0, MAX_PAGE + 1 - total)
  total = total + #members
  if total > MAX_PAGE then
    return bad('the sets have more than ' .. MAX_PAGE .. ' member docs together; claim fewer at a time')
  end
  local record_prefix = prefix .. 'd:' .. #set.namespace .. ':' .. set.namespace
  set.members = {}
  for _, member in ipairs(members) do
    local secondary_stop = string.find(member, '\0\1', #part + 1, true)
    if not secondary_stop then
      return redis.error_reply('EQ_CORRUPT doc namespace ' .. set.namespace .. ' has a malformed index entry')
    end
    local id = string.sub(member, secondary_stop + 2)
    local record
    if set.omit then
      record = redis.call('GETRANGE', record_prefix .. id, 0, DOC_HEADER_BYTES - 1)
      if record == '' then record = false end
    else
      record = redis.call('GET', record_prefix .. id)
    end
    if not record then
      return redis.error_reply('EQ_CORRUPT doc namespace ' .. set.namespace .. ' lists doc ' .. id .. ' but its record is missing')
    end
    -- The format byte first: a record of another format may not even unpack.
    local format_version = string.byte(record, 1)
    if format_version ~= 2 then
      return redis.error_reply('EQ_CORRUPT doc ' .. id .. ' has record format ' .. tostring(format_version) .. ', this script reads 2')
    end
    local _, version, doc_at, created, modified, key, secondary_key, owner, content_start =
      struct.unpack(DOC_RECORD_FORMAT, record)
    if held_by_other(owner, doc_at) then
      local current = version
      doc_failures[#doc_failures + 1] = {'CLAIM', 'claimed', set.namespace, id, version, current, key}
    end
    -- A set's first claim learns its members' versions here; later ones find them in the
    -- record too (every member write folds its version in), and reading them again costs nothing.
    if version > set.highest then set.highest = version end
    if not set.omit then
      local namespace, content = set.namespace, string.sub(record, content_start)
      set.members[#set.members + 1] =
        {namespace, id, version, owner, doc_at, key, secondary_key, content, created, modified}
    end
  end
end
if #task_failures > 0 or #doc_failures > 0 then return {0, task_failures, doc_failures} end

-- All checks are done (every lock written below was read above); writes start here.
local sets = {}
local docs = {}
for i, set in ipairs(wanted) do
  local version = math.max(set.version, set.highest) + 1
  redis.call('SET', set.record_key, struct.pack(SET_RECORD_FORMAT, 4, version, set.highest, at, #claimant, claimant))
  local namespace, key = set.namespace, set.key
  sets[i] = {namespace, '', version, claimant, at, key, '', '', 0, 0}
  for _, doc in ipairs(set.members) do docs[#docs + 1] = doc end
end
return {1, sets, docs}
