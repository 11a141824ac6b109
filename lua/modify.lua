-- entroq-redis contract 3: modify.lua
-- Inserts, changes, deletes and depends on any set of tasks and docs, all or nothing.
--
-- Every item is validated and every dependency checked before the first write. On any
-- failure nothing is written and every failing item is reported.
--
-- KEYS[1]  {ns}:queues     queue index; names the namespace slot (must equal ARGV[1] .. "queues")
-- ARGV[1]  key prefix      "{ns}:" (every other key is derived from it, see lua/README.md)
-- ARGV[2]  contract        "3"
-- ARGV[3]  claimant        the modifier, at most 128 bytes (may be empty)
-- ARGV[4]  id_seed         entropy for generated IDs: at least 16 bytes when an insert has an empty id
-- ARGV[5]  notify          "PUBLISH", "SPUBLISH" or "" (how to announce newly available tasks)
-- ARGV[6]  n_inserts       integer
-- ARGV[7]  n_changes       integer
-- ARGV[8]  n_deletes       integer
-- ARGV[9]  n_depends       integer
-- ARGV[10] n_doc_inserts   integer
-- ARGV[11] n_doc_changes   integer
-- ARGV[12] n_doc_deletes   integer
-- ARGV[13] n_doc_depends   integer (the eight counts add up to at most 1000)
-- ARGV[14..] items, in that order:
--   insert (7 fields):  id ("" = generate a UUIDv4), queue, at_mode ("at" | "by"), ms, value,
--                       attempt, err
--   change (10 fields): id, version, old_queue (informational, not checked), mode
--                       ("full" | "lease" | "reset_claims"), queue, at_mode, ms, value, attempt, err
--                       ("lease" changes only the arrival; queue, value, attempt and err are ignored)
--   delete (3 fields):  id, version, queue ("" = wherever the task is)
--   depend (3 fields):  id, version, queue ("" = wherever the task is)
--   doc insert (7 fields): namespace, id ("" = generate a UUIDv4), key, secondary_key, at_mode,
--                       ms, content
--   doc change (9 fields): namespace, id, version, mode ("full" | "lease"), key, secondary_key,
--                       at_mode, ms, content ("lease" moves only the arrival; id "" with a key and
--                       mode "lease" renews or releases the lock of the doc set (namespace, key))
--   doc delete (3 fields): namespace, id, version
--   doc depend (3 fields): namespace, id, version
--   A doc change, delete or depend names the doc at its own version or, while the caller holds
--   the doc's set (namespace, the doc's key) and the doc is below that lock's version (not
--   written since the lock was), at that set lock's version (EntroQ 1.13 clients). Within a
--   set that has a lock record the two counters are ordered: a doc write gets a version above
--   the locks of its old and new key's sets, a lock write one above every member's.
--   at_mode "at": ms is absolute ms since the epoch, <= 0 means now.
--   at_mode "by": ms is relative to the store's clock, <= 0 means now.
--
-- Reply (applied):  {1, inserted, changed, inserted_docs, changed_docs}  lists in request order;
--                   each task {queue, id, version, at_ms, claimant, value, created_ms, modified_ms,
--                    claims, attempt, err}
--                   each doc {namespace, id, version, claimant, at_ms, key, secondary_key, content,
--                    created_ms, modified_ms}
--                   a doc set (a set's lease change) {namespace, "", version, claimant, at_ms, key,
--                    "", "", 0, 0}
-- Reply (refused):  {0, failures, doc_failures}  each task failure
--                   {kind, reason, id, version, queue, current_version}, each doc failure
--                   {kind, reason, namespace, id, version, current_version, key} (id "" names the
--                   doc set of key)
--                   kind:   INSERT | CHANGE | DELETE | DEPEND | CLAIM
--                   reason: collision | missing | mismatch | claimed
--                   current_version is -1 when the task, doc or set lock does not exist
-- Errors:           EQ_BADARG <message>  (bad input; nothing written)
--                   EQ_CONTRACT <message> (wrong contract version or key prefix)
--                   EQ_CORRUPT <message>  (a task, doc or set lock record has a format this script
--                   cannot read)
-- Publishes:        on channel ARGV[1] .. "wake", one message per queue that gained an available
--                   task or a new earliest future arrival: "<n_available>:<wait_ms or -1>:<queue>"
--                   (docs publish nothing)

local MAX_ITEMS = 1000
local MAX_ID_BYTES = 64
local MAX_QUEUE_BYTES = 1024
local MAX_CLAIMANT_BYTES = 128
local MAX_VALUE_BYTES = 16777216
local MAX_ERR_BYTES = 1048576
local MAX_TOTAL_BYTES = 67108864
local MAX_AT_MS = 99999999999999
local MAX_INT32 = 2147483647
local MAX_DOC_NAMESPACE_BYTES = 1024
local MAX_DOC_ID_BYTES = 256
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

if ARGV[2] ~= '3' then
  return redis.error_reply('EQ_CONTRACT modify.lua speaks contract 3, caller sent ' .. tostring(ARGV[2]))
end
if #ARGV < 13 then
  return redis.error_reply('EQ_BADARG modify.lua needs at least 13 ARGV entries, got ' .. #ARGV)
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
if #claimant > MAX_CLAIMANT_BYTES then return bad('claimant is longer than ' .. MAX_CLAIMANT_BYTES .. ' bytes') end
local id_seed = ARGV[4]
local notify = ARGV[5]
if notify ~= 'PUBLISH' and notify ~= 'SPUBLISH' and notify ~= '' then
  return bad('notify must be PUBLISH, SPUBLISH or empty')
end
local counts = {}
local n_items = 0
for i = 1, 8 do
  counts[i] = parse_integer(ARGV[5 + i], 0, MAX_ITEMS)
  if counts[i] == nil then return bad('item counts must be integers from 0 to ' .. MAX_ITEMS) end
  n_items = n_items + counts[i]
end
local n_inserts, n_changes, n_deletes, n_depends = counts[1], counts[2], counts[3], counts[4]
local n_doc_inserts, n_doc_changes, n_doc_deletes, n_doc_depends = counts[5], counts[6], counts[7], counts[8]
if n_items > MAX_ITEMS then
  return bad('at most ' .. MAX_ITEMS .. ' items (tasks and docs) per modify, got ' .. n_items)
end
local expected_argv = 13 + 7 * n_inserts + 10 * n_changes + 3 * n_deletes + 3 * n_depends
  + 7 * n_doc_inserts + 9 * n_doc_changes + 3 * n_doc_deletes + 3 * n_doc_depends
if #ARGV ~= expected_argv then
  return bad('ARGV holds ' .. #ARGV .. ' entries, the item counts call for ' .. expected_argv)
end

-- shared: clock begin
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
-- shared: clock end

local function check_id(id, what)
  if id == '' then return what .. ' id must not be empty' end
  if #id > MAX_ID_BYTES then return what .. ' id is longer than ' .. MAX_ID_BYTES .. ' bytes' end
  return nil
end

local function check_queue(queue, what)
  if queue == '' then return what .. ' queue name must not be empty' end
  if #queue > MAX_QUEUE_BYTES then return what .. ' queue name is longer than ' .. MAX_QUEUE_BYTES .. ' bytes' end
  return nil
end

-- Resolves an arrival to absolute ms on the store's clock; nil means out of range.
local function arrival(mode, text)
  local ms = parse_integer(text, -MAX_AT_MS, MAX_AT_MS)
  if ms == nil then return nil end
  if mode == 'at' then
    if ms <= 0 then return now end
    return ms
  elseif mode == 'by' then
    if ms <= 0 then return now end
    if now + ms > MAX_AT_MS then return nil end
    return now + ms
  end
  return nil
end

-- Builds a lowercase UUIDv4 from caller entropy, so the script stays deterministic.
local function generated_id(index)
  local hex = redis.sha1hex(id_seed .. ':' .. index)
  local variant_index = (tonumber(string.sub(hex, 17, 17), 16) % 4) + 1
  local variant = string.sub('89ab', variant_index, variant_index)
  return string.sub(hex, 1, 8) .. '-' .. string.sub(hex, 9, 12) .. '-4' .. string.sub(hex, 14, 16) .. '-'
    .. variant .. string.sub(hex, 18, 20) .. '-' .. string.sub(hex, 21, 32)
end

local total_bytes = 0
local position = 14

-- Parse and validate every task item (no reads of stored data yet).
local inserts = {}
local insert_ids = {}
for i = 1, n_inserts do
  local item = {
    id = ARGV[position], queue = ARGV[position + 1], at_mode = ARGV[position + 2], ms = ARGV[position + 3],
    value = ARGV[position + 4], attempt = ARGV[position + 5], err = ARGV[position + 6],
  }
  position = position + 7
  if item.id == '' then
    if #id_seed < 16 then return bad('id_seed must hold at least 16 bytes when an insert has no id') end
    item.id = generated_id(i)
  else
    local problem = check_id(item.id, 'insert ' .. i)
    if problem then return bad(problem) end
  end
  if insert_ids[item.id] then return bad('task id ' .. item.id .. ' is inserted twice') end
  insert_ids[item.id] = true
  local problem = check_queue(item.queue, 'insert ' .. i)
  if problem then return bad(problem) end
  item.at = arrival(item.at_mode, item.ms)
  if item.at == nil then return bad('insert ' .. i .. ' has a bad arrival: at_mode "at" or "by" and ms within +-' .. MAX_AT_MS) end
  item.attempt = parse_integer(item.attempt, 0, MAX_INT32)
  if item.attempt == nil then return bad('insert ' .. i .. ' attempt must be an integer from 0 to ' .. MAX_INT32) end
  if #item.value > MAX_VALUE_BYTES then return bad('insert ' .. i .. ' value is larger than ' .. MAX_VALUE_BYTES .. ' bytes') end
  if #item.err > MAX_ERR_BYTES then return bad('insert ' .. i .. ' err is larger than ' .. MAX_ERR_BYTES .. ' bytes') end
  total_bytes = total_bytes + #item.value + #item.err
  inserts[i] = item
end

local touched = {}
local changes = {}
for i = 1, n_changes do
  local item = {
    id = ARGV[position], version = ARGV[position + 1], old_queue = ARGV[position + 2], mode = ARGV[position + 3],
    queue = ARGV[position + 4], at_mode = ARGV[position + 5], ms = ARGV[position + 6], value = ARGV[position + 7],
    attempt = ARGV[position + 8], err = ARGV[position + 9],
  }
  position = position + 10
  local problem = check_id(item.id, 'change ' .. i)
  if problem then return bad(problem) end
  if touched[item.id] then return bad('task id ' .. item.id .. ' is changed or deleted more than once') end
  touched[item.id] = true
  item.version = parse_integer(item.version, 0, MAX_INT32)
  if item.version == nil then return bad('change ' .. i .. ' version must be an integer from 0 to ' .. MAX_INT32) end
  if item.mode ~= 'full' and item.mode ~= 'lease' and item.mode ~= 'reset_claims' then
    return bad('change ' .. i .. ' mode must be full, lease or reset_claims')
  end
  item.at = arrival(item.at_mode, item.ms)
  if item.at == nil then return bad('change ' .. i .. ' has a bad arrival: at_mode "at" or "by" and ms within +-' .. MAX_AT_MS) end
  if item.mode ~= 'lease' then
    problem = check_queue(item.queue, 'change ' .. i)
    if problem then return bad(problem) end
    item.attempt = parse_integer(item.attempt, 0, MAX_INT32)
    if item.attempt == nil then return bad('change ' .. i .. ' attempt must be an integer from 0 to ' .. MAX_INT32) end
    if #item.value > MAX_VALUE_BYTES then return bad('change ' .. i .. ' value is larger than ' .. MAX_VALUE_BYTES .. ' bytes') end
    if #item.err > MAX_ERR_BYTES then return bad('change ' .. i .. ' err is larger than ' .. MAX_ERR_BYTES .. ' bytes') end
    total_bytes = total_bytes + #item.value + #item.err
  end
  changes[i] = item
end

local deletes = {}
local depends = {}
for kind = 1, 2 do
  local count = (kind == 1) and n_deletes or n_depends
  local list = (kind == 1) and deletes or depends
  local what = (kind == 1) and 'delete ' or 'depend '
  for i = 1, count do
    local item = {id = ARGV[position], version = ARGV[position + 1], queue = ARGV[position + 2]}
    position = position + 3
    local problem = check_id(item.id, what .. i)
    if problem then return bad(problem) end
    if kind == 1 then
      if touched[item.id] then return bad('task id ' .. item.id .. ' is changed or deleted more than once') end
      touched[item.id] = true
    end
    item.version = parse_integer(item.version, 0, MAX_INT32)
    if item.version == nil then return bad(what .. i .. ' version must be an integer from 0 to ' .. MAX_INT32) end
    if #item.queue > MAX_QUEUE_BYTES then return bad(what .. i .. ' queue name is longer than ' .. MAX_QUEUE_BYTES .. ' bytes') end
    list[i] = item
  end
end

-- Parse and validate every doc item. A doc is named by (doc namespace, id) and a doc set by
-- (doc namespace, key); both may hold any bytes, so the length-prefixed record key (section 2
-- of lua/README.md) is what identifies them here too: it cannot be built by two different pairs.
local function doc_key(namespace, id) return prefix .. 'd:' .. #namespace .. ':' .. namespace .. id end
local function set_key(namespace, key) return prefix .. 'ds:' .. #namespace .. ':' .. namespace .. key end

local function check_bytes(text, low, high, what)
  if #text < low then return what .. ' must not be empty' end
  if #text > high then return what .. ' is longer than ' .. high .. ' bytes' end
  return nil
end

local function check_doc_fields(item, what)
  return check_bytes(item.key, 0, MAX_DOC_KEY_BYTES, what .. ' key')
    or check_bytes(item.secondary_key, 0, MAX_DOC_KEY_BYTES, what .. ' secondary key')
    or (#item.content > MAX_VALUE_BYTES and (what .. ' content is larger than ' .. MAX_VALUE_BYTES .. ' bytes'))
    or nil
end

-- The record keys of the docs and sets this call inserts, changes or deletes: each at most once
-- (doc depends may repeat them, they are checked against the versions before the call).
local doc_touched = {}
local function touch(record_key, what)
  if doc_touched[record_key] then
    return what .. ' names a doc (or doc set) that an earlier doc insert, change or delete of this call names'
  end
  doc_touched[record_key] = true
  return nil
end

local doc_inserts = {}
for j = 1, n_doc_inserts do
  local item = {
    namespace = ARGV[position], id = ARGV[position + 1], key = ARGV[position + 2],
    secondary_key = ARGV[position + 3], at_mode = ARGV[position + 4], ms = ARGV[position + 5],
    content = ARGV[position + 6],
  }
  position = position + 7
  local what = 'doc insert ' .. j
  if item.id == '' then
    if #id_seed < 16 then return bad('id_seed must hold at least 16 bytes when a doc insert has no id') end
    -- Numbered after the task inserts, so a task and a doc of one call never share a seed input.
    item.id = generated_id(n_inserts + j)
  end
  local problem = check_bytes(item.namespace, 1, MAX_DOC_NAMESPACE_BYTES, what .. ' namespace')
    or check_bytes(item.id, 1, MAX_DOC_ID_BYTES, what .. ' id')
    or check_doc_fields(item, what)
  if problem then return bad(problem) end
  item.at = arrival(item.at_mode, item.ms)
  if item.at == nil then return bad(what .. ' has a bad arrival: at_mode "at" or "by" and ms within +-' .. MAX_AT_MS) end
  item.record_key = doc_key(item.namespace, item.id)
  problem = touch(item.record_key, what)
  if problem then return bad(problem) end
  total_bytes = total_bytes + #item.content
  doc_inserts[j] = item
end

local doc_changes = {}
for j = 1, n_doc_changes do
  local item = {
    namespace = ARGV[position], id = ARGV[position + 1], version = ARGV[position + 2], mode = ARGV[position + 3],
    key = ARGV[position + 4], secondary_key = ARGV[position + 5], at_mode = ARGV[position + 6],
    ms = ARGV[position + 7], content = ARGV[position + 8],
  }
  position = position + 9
  local what = 'doc change ' .. j
  local problem = check_bytes(item.namespace, 1, MAX_DOC_NAMESPACE_BYTES, what .. ' namespace')
  if problem then return bad(problem) end
  item.version = parse_integer(item.version, 0, MAX_INT32)
  if item.version == nil then return bad(what .. ' version must be an integer from 0 to ' .. MAX_INT32) end
  if item.mode ~= 'full' and item.mode ~= 'lease' then return bad(what .. ' mode must be full or lease') end
  item.at = arrival(item.at_mode, item.ms)
  if item.at == nil then return bad(what .. ' has a bad arrival: at_mode "at" or "by" and ms within +-' .. MAX_AT_MS) end
  if item.id == '' then
    -- A set reference: only its lock's lease can change (the set has no fields of its own).
    if item.key == '' then return bad(what .. ' needs an id, or a key to name a doc set') end
    if item.mode ~= 'lease' then return bad(what .. ' names a doc set (empty id): a set may only have its lease changed') end
    problem = check_bytes(item.key, 1, MAX_DOC_KEY_BYTES, what .. ' set key')
    item.is_set = true
    item.record_key = set_key(item.namespace, item.key)
  else
    problem = check_bytes(item.id, 1, MAX_DOC_ID_BYTES, what .. ' id')
    if not problem and item.mode == 'full' then
      problem = check_doc_fields(item, what)
      total_bytes = total_bytes + #item.content
    end
    item.record_key = doc_key(item.namespace, item.id)
  end
  problem = problem or touch(item.record_key, what)
  if problem then return bad(problem) end
  doc_changes[j] = item
end

local doc_deletes = {}
local doc_depends = {}
for kind = 1, 2 do
  local count = (kind == 1) and n_doc_deletes or n_doc_depends
  local list = (kind == 1) and doc_deletes or doc_depends
  for j = 1, count do
    local item = {namespace = ARGV[position], id = ARGV[position + 1], version = ARGV[position + 2]}
    position = position + 3
    local what = ((kind == 1) and 'doc delete ' or 'doc depend ') .. j
    -- An empty id would name a doc set, which only a lease change may name.
    local problem = check_bytes(item.namespace, 1, MAX_DOC_NAMESPACE_BYTES, what .. ' namespace')
      or check_bytes(item.id, 1, MAX_DOC_ID_BYTES, what .. ' id')
    if problem then return bad(problem) end
    item.version = parse_integer(item.version, 0, MAX_INT32)
    if item.version == nil then return bad(what .. ' version must be an integer from 0 to ' .. MAX_INT32) end
    item.record_key = doc_key(item.namespace, item.id)
    if kind == 1 then
      problem = touch(item.record_key, what)
      if problem then return bad(problem) end
    end
    list[j] = item
  end
end
if total_bytes > MAX_TOTAL_BYTES then
  return bad('values, errors and doc contents add up to more than ' .. MAX_TOTAL_BYTES .. ' bytes')
end

-- Task dependency checks: reads only.
local records = {}
local function load(id)
  local task = records[id]
  if task ~= nil then return task end
  local record = redis.call('GET', prefix .. 't:' .. id)
  if not record then
    records[id] = false
    return false
  end
  local format_version, version, at, created, modified, claims, attempt, queue, owner, err, value_start =
    struct.unpack(RECORD_FORMAT, record)
  if format_version ~= 1 then
    -- Raised during the checks, before any write.
    error(redis.error_reply('EQ_CORRUPT task ' .. id .. ' has record format ' .. format_version .. ', this script reads 1'))
  end
  task = {
    id = id, version = version, at = at, created = created, modified = modified, claims = claims,
    attempt = attempt, queue = queue, claimant = owner, err = err, value = string.sub(record, value_start),
  }
  records[id] = task
  return task
end

-- shared: task-failures begin
local failures = {}
local function fail(kind, reason, id, version, queue, current)
  failures[#failures + 1] = {kind, reason, id, version, queue, current}
end
local function held_by_other(task)
  return task.at > now and task.claimant ~= '' and task.claimant ~= claimant
end
-- shared: task-failures end

for _, item in ipairs(inserts) do
  local existing = load(item.id)
  if existing then fail('INSERT', 'collision', item.id, existing.version, existing.queue, existing.version) end
end
for _, item in ipairs(changes) do
  local task = load(item.id)
  if not task then
    fail('CHANGE', 'missing', item.id, item.version, item.old_queue, -1)
  elseif task.version ~= item.version then
    fail('CHANGE', 'mismatch', item.id, item.version, task.queue, task.version)
  elseif held_by_other(task) then
    fail('CLAIM', 'claimed', item.id, item.version, task.queue, task.version)
  end
end
for _, item in ipairs(deletes) do
  local task = load(item.id)
  -- shared: delete-rules begin
  if not task or (item.queue ~= '' and item.queue ~= task.queue) then
    fail('DELETE', 'missing', item.id, item.version, item.queue, task and task.version or -1)
  elseif task.version ~= item.version then
    fail('DELETE', 'mismatch', item.id, item.version, task.queue, task.version)
  elseif held_by_other(task) then
    fail('CLAIM', 'claimed', item.id, item.version, task.queue, task.version)
  -- shared: delete-rules end
  end
end
for _, item in ipairs(depends) do
  local task = load(item.id)
  if not task or (item.queue ~= '' and item.queue ~= task.queue) then
    fail('DEPEND', 'missing', item.id, item.version, item.queue, task and task.version or -1)
  elseif task.version ~= item.version then
    fail('DEPEND', 'mismatch', item.id, item.version, task.queue, task.version)
  end
end

-- Doc dependency checks: reads only, like the task checks above.
--
-- Only a lease change keeps a doc's content, so only it reads the whole record; every other
-- item reads the record's head (GETRANGE), which holds every field but the content: a check
-- then costs the same for a 16 MiB doc as for an empty one.
local DOC_HEAD_BYTES = 1 + 4 + 8 + 8 + 8 + (2 + MAX_DOC_KEY_BYTES) * 2 + 2 + MAX_CLAIMANT_BYTES
local docs = {}
local function load_doc(item, with_content)
  local doc = docs[item.record_key]
  if doc ~= nil and (doc == false or doc.content ~= nil or not with_content) then return doc end
  local record
  if with_content then
    record = redis.call('GET', item.record_key) or ''
  else
    record = redis.call('GETRANGE', item.record_key, 0, DOC_HEAD_BYTES - 1)
  end
  if record == '' then  -- no such key (a doc record is never empty)
    docs[item.record_key] = false
    return false
  end
  -- The format byte is checked before unpacking, so a foreign string there is EQ_CORRUPT too.
  if string.byte(record, 1) ~= 2 then
    error(redis.error_reply('EQ_CORRUPT a doc record has format ' .. string.byte(record, 1) .. ', this script reads 2'))
  end
  local _, version, at, created, modified, key, secondary_key, owner, content_start =
    struct.unpack(DOC_RECORD_FORMAT, record)
  doc = {
    record_key = item.record_key, namespace = item.namespace, id = item.id, version = version, at = at,
    created = created, modified = modified, key = key, secondary_key = secondary_key, claimant = owner,
    content = with_content and string.sub(record, content_start) or nil,
  }
  docs[item.record_key] = doc
  return doc
end

-- A set's lock record is created by the first claim of the set and kept for good, so its
-- version only ever grows and a stale holder can never match it again. It also keeps the
-- highest version any member has been given (lua/README.md section 3), so that a renewal or
-- release can move the lock above every member without reading them.
local sets = {}
local function load_set(namespace, key)
  local record_key = set_key(namespace, key)
  local lock = sets[record_key]
  if lock ~= nil then return lock end
  local record = redis.call('GET', record_key)
  if not record then
    sets[record_key] = false
    return false
  end
  if string.byte(record, 1) ~= 4 then
    error(redis.error_reply('EQ_CORRUPT a doc set lock record has format ' .. string.byte(record, 1) .. ', this script reads 4'))
  end
  local _, version, highest, at, owner = struct.unpack(SET_RECORD_FORMAT, record)
  lock = {record_key = record_key, namespace = namespace, key = key, version = version, highest = highest, at = at,
    claimant = owner}
  sets[record_key] = lock
  return lock
end

local doc_failures = {}
local function doc_fail(kind, reason, namespace, id, version, current, key)
  doc_failures[#doc_failures + 1] = {kind, reason, namespace, id, version, current, key}
end

-- A set held by another claimant protects every member: an item that would insert, change,
-- delete, or move a doc into or out of it fails with CLAIM naming the set. The set is reported
-- once per call however many items touch it. Docs with an empty key belong to no set.
local reported_sets = {}
local function set_held_by_other(namespace, key)
  if key == '' then return false end
  local lock = load_set(namespace, key)
  if not lock or not held_by_other(lock) then return false end
  if not reported_sets[lock.record_key] then
    reported_sets[lock.record_key] = true
    doc_fail('CLAIM', 'claimed', namespace, '', lock.version, lock.version, key)
  end
  return true
end

-- EntroQ 1.13's clients (PyPI entroq 0.15.0) give a member doc of a claimed set its SET's
-- version: their doc groups keep one version per group. So a doc change, delete or depend may
-- name the doc at its own version or, while the caller itself holds the doc's set (the set of
-- its current key: lock claimant == ARGV[3], at_ms > now), at the set lock's current version,
-- as long as the doc's own version is below it. The writes keep a set's two counters ordered
-- (every lock write goes above every member, every member write above the lock), so a member
-- is below its set's lock version exactly when nobody has written it since the lock was
-- written: the set's version names the member as the holder saw it then, and only then
-- (lua/README.md section 6, *Why no stale version commits*). Returns true when the item is
-- accepted through the set.
local function set_version_naming(item, doc)
  if doc.version == item.version or doc.key == '' or claimant == '' then return false end
  local lock = load_set(item.namespace, doc.key)
  return lock and lock.version == item.version and lock.claimant == claimant and lock.at > now
    and doc.version < lock.version or false
end

-- Each item reports at most one failure of its own: the doc's own state first (it exists, its
-- version -- its own, or its held set's as above --, its claimant), then the sets it touches.
for _, item in ipairs(doc_inserts) do
  local existing = load_doc(item, false)
  if existing then
    doc_fail('INSERT', 'collision', item.namespace, item.id, existing.version, existing.version, existing.key)
  else
    set_held_by_other(item.namespace, item.key)
  end
end
for _, item in ipairs(doc_changes) do
  if item.is_set then
    local lock = load_set(item.namespace, item.key)
    if not lock then
      doc_fail('CHANGE', 'missing', item.namespace, '', item.version, -1, item.key)
    elseif lock.version ~= item.version then
      doc_fail('CHANGE', 'mismatch', item.namespace, '', item.version, lock.version, item.key)
    else
      set_held_by_other(item.namespace, item.key)
    end
  else
    local doc = load_doc(item, item.mode == 'lease')
    if not doc then
      doc_fail('CHANGE', 'missing', item.namespace, item.id, item.version, -1, item.key)
    elseif doc.version ~= item.version and not set_version_naming(item, doc) then
      doc_fail('CHANGE', 'mismatch', item.namespace, item.id, item.version, doc.version, doc.key)
    elseif held_by_other(doc) then
      doc_fail('CLAIM', 'claimed', item.namespace, item.id, item.version, doc.version, doc.key)
    elseif not set_held_by_other(item.namespace, doc.key) and item.mode == 'full' and item.key ~= doc.key then
      set_held_by_other(item.namespace, item.key)
    end
  end
end
for _, item in ipairs(doc_deletes) do
  local doc = load_doc(item, false)
  if not doc then
    doc_fail('DELETE', 'missing', item.namespace, item.id, item.version, -1, '')
  elseif doc.version ~= item.version and not set_version_naming(item, doc) then
    doc_fail('DELETE', 'mismatch', item.namespace, item.id, item.version, doc.version, doc.key)
  elseif held_by_other(doc) then
    doc_fail('CLAIM', 'claimed', item.namespace, item.id, item.version, doc.version, doc.key)
  else
    set_held_by_other(item.namespace, doc.key)
  end
end
for _, item in ipairs(doc_depends) do
  local doc = load_doc(item, false)
  if not doc then
    doc_fail('DEPEND', 'missing', item.namespace, item.id, item.version, -1, '')
  elseif doc.version ~= item.version and not set_version_naming(item, doc) then
    doc_fail('DEPEND', 'mismatch', item.namespace, item.id, item.version, doc.version, doc.key)
  end
end
if #failures > 0 or #doc_failures > 0 then return {0, failures, doc_failures} end

-- Every doc index key the writes below will use is read once here, before the first write:
-- a key of the wrong type there (a foreign writer, lua/README.md section 2) then fails the call
-- with nothing written, instead of half way through.
local doc_indexes_read = {}
local function read_doc_indexes(namespace)
  if doc_indexes_read[namespace] then return end
  doc_indexes_read[namespace] = true
  redis.call('ZCARD', prefix .. 'dk:' .. namespace)
  redis.call('ZCARD', prefix .. 'dc:' .. namespace)
end
for _, list in ipairs({doc_inserts, doc_changes, doc_deletes}) do
  for _, item in ipairs(list) do
    if not item.is_set then read_doc_indexes(item.namespace) end
  end
end
if n_doc_inserts + n_doc_changes + n_doc_deletes > 0 then redis.call('ZCARD', prefix .. 'dn') end
-- The lock records of every doc change's old and new key's set (most were read by the checks):
-- the writes below order the doc's new version against them and fold it into them.
for _, item in ipairs(doc_changes) do
  if not item.is_set then
    local doc = docs[item.record_key]
    if doc.key ~= '' then load_set(item.namespace, doc.key) end
    if item.mode == 'full' and item.key ~= '' then load_set(item.namespace, item.key) end
  end
end

-- Earliest arrival per destination queue before any write, to tell whether an arrival
-- becomes the new earliest one (and so must wake claimers sleeping until a later time).
local wake = {}
local function note_destination(queue)
  if wake[queue] == nil then
    local first = redis.call('ZRANGE', prefix .. 'q:' .. queue, 0, 0, 'WITHSCORES')
    wake[queue] = {earliest = first[1] and tonumber(first[2]) or nil, available = 0, future = nil}
  end
end
for _, item in ipairs(inserts) do note_destination(item.queue) end
for _, item in ipairs(changes) do
  if item.mode == 'lease' then note_destination(records[item.id].queue) else note_destination(item.queue) end
end

-- All checks are done; writes start here. Nothing below can fail on well-formed data.
local function score(ms) return string.format('%d', ms) end

local function histogram_add(queue, claims, delta)
  if claims <= 0 then return end
  local histogram_key = prefix .. 'h:' .. queue
  local left = redis.call('HINCRBY', histogram_key, claims, delta)
  if delta > 0 and left == 1 then
    redis.call('ZADD', prefix .. 'm:' .. queue, claims, claims)
  elseif left <= 0 then
    redis.call('HDEL', histogram_key, claims)
    redis.call('ZREM', prefix .. 'm:' .. queue, claims)
  end
end

local function is_claimed(task) return task.claims > 0 and task.claimant ~= '' end

local function unindex(task)
  local queue_key = prefix .. 'q:' .. task.queue
  redis.call('ZREM', queue_key, task.id)
  if is_claimed(task) then redis.call('ZREM', prefix .. 'c:' .. task.queue, task.id) end
  histogram_add(task.queue, task.claims, -1)
  if redis.call('ZCARD', queue_key) == 0 then redis.call('ZREM', KEYS[1], task.queue) end
end

local function index(task)
  redis.call('ZADD', prefix .. 'q:' .. task.queue, score(task.at), task.id)
  if is_claimed(task) then redis.call('ZADD', prefix .. 'c:' .. task.queue, score(task.at), task.id) end
  histogram_add(task.queue, task.claims, 1)
  redis.call('ZADD', KEYS[1], 'NX', 0, task.queue)
end

-- Moves a changed task's index entries; within one queue only what changed is touched.
local function reindex(old, task)
  if old.queue ~= task.queue then
    unindex(old)
    index(task)
    return
  end
  redis.call('ZADD', prefix .. 'q:' .. task.queue, score(task.at), task.id)
  if is_claimed(task) then
    redis.call('ZADD', prefix .. 'c:' .. task.queue, score(task.at), task.id)
  elseif is_claimed(old) then
    redis.call('ZREM', prefix .. 'c:' .. task.queue, task.id)
  end
  if old.claims ~= task.claims then
    histogram_add(task.queue, old.claims, -1)
    histogram_add(task.queue, task.claims, 1)
  end
end

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

local function note_arrival(task)
  local entry = wake[task.queue]
  if task.at <= now then
    entry.available = entry.available + 1
  elseif entry.earliest == nil or task.at < entry.earliest then
    if entry.future == nil or task.at < entry.future then entry.future = task.at end
  end
end

for _, item in ipairs(deletes) do
  local task = records[item.id]
  unindex(task)
  redis.call('DEL', prefix .. 't:' .. task.id)
end

local changed = {}
for i, item in ipairs(changes) do
  local task = records[item.id]
  local old = {id = task.id, queue = task.queue, claims = task.claims, claimant = task.claimant}
  if item.mode ~= 'lease' then
    task.queue = item.queue
    task.value = item.value
    task.attempt = item.attempt
    task.err = item.err
    if item.mode == 'reset_claims' then task.claims = 0 end
  end
  task.at = item.at
  task.version = task.version + 1
  task.modified = now
  if task.at > now then task.claimant = claimant else task.claimant = '' end
  reindex(old, task)
  store(task)
  note_arrival(task)
  changed[i] = as_reply(task)
end

local inserted = {}
for i, item in ipairs(inserts) do
  local task = {
    id = item.id, version = 0, at = item.at, created = now, modified = now, claims = 0,
    attempt = item.attempt, queue = item.queue, claimant = claimant, err = item.err, value = item.value,
  }
  index(task)
  store(task)
  note_arrival(task)
  inserted[i] = as_reply(task)
end


-- Docs: deletes, then changes, then inserts, as for tasks. Every doc and set lock written here
-- was loaded (and so checked) above.

-- The doc index orders a namespace's docs by (key, secondary key, id) under ZRANGE BYLEX, all
-- scores 0. Each key part is made self-delimiting and order-preserving: a NUL byte becomes
-- NUL 0xFF and the part ends with NUL 0x01, which sorts below every continuation of the part.
-- (string.find with plain = true first: the pattern engine costs ~20 us per KiB, and most keys
-- hold no NUL at all.)
-- shared: sort-part begin
local function sort_part(text)
  if string.find(text, '\0', 1, true) then text = string.gsub(text, '%z', '\0\255') end
  return text .. '\0\1'
end
-- shared: sort-part end
local function index_member(doc) return sort_part(doc.key) .. sort_part(doc.secondary_key) .. doc.id end

local function store_doc(doc)
  redis.call('SET', doc.record_key, struct.pack(DOC_RECORD_FORMAT, 2, doc.version, doc.at, doc.created,
    doc.modified, #doc.key, doc.key, #doc.secondary_key, doc.secondary_key, #doc.claimant, doc.claimant)
    .. doc.content)
end

-- dc:<namespace> lists the docs with a claimant (for the namespace's claimed count); it is kept
-- in step with the record's claimant and arrival.
local function index_doc_claim(doc, old_claimant)
  if doc.claimant ~= '' then
    redis.call('ZADD', prefix .. 'dc:' .. doc.namespace, score(doc.at), doc.id)
  elseif old_claimant ~= '' then
    redis.call('ZREM', prefix .. 'dc:' .. doc.namespace, doc.id)
  end
end

local function doc_reply(doc)
  return {doc.namespace, doc.id, doc.version, doc.claimant, doc.at, doc.key, doc.secondary_key, doc.content,
    doc.created, doc.modified}
end

-- A change's new arrival: in the future it makes the modifier the holder, otherwise it
-- releases the doc (or set) now, as EntroQ does.
local function take_arrival(target, at)
  if at > now then
    target.at = at
    target.claimant = claimant
  else
    target.at = now
    target.claimant = ''
  end
end

for _, item in ipairs(doc_deletes) do
  local doc = docs[item.record_key]
  local index_key = prefix .. 'dk:' .. doc.namespace
  redis.call('ZREM', index_key, index_member(doc))
  if doc.claimant ~= '' then redis.call('ZREM', prefix .. 'dc:' .. doc.namespace, doc.id) end
  redis.call('DEL', doc.record_key)
  if redis.call('ZCARD', index_key) == 0 then redis.call('ZREM', prefix .. 'dn', doc.namespace) end
end

-- A set's two counters are kept in one order (lua/README.md section 6, *Why no stale version
-- commits*): a doc write whose old or new key's set has a lock record gives the doc a version
-- above those locks' versions and folds it into their highest member version; a lock write
-- (below, after every member write of this call) goes above that. Docs of sets never claimed,
-- and docs with an empty key, just add 1.
local dirty_sets = {}
local function fold_into(lock, version)
  if lock and version > lock.highest then
    lock.highest = version
    if not lock.dirty then
      lock.dirty = true
      dirty_sets[#dirty_sets + 1] = lock
    end
  end
end
local function lock_of(namespace, key)
  if key == '' then return false end
  return sets[set_key(namespace, key)]  -- loaded before the first write
end

local changed_docs = {}
for j, item in ipairs(doc_changes) do
  if not item.is_set then
    local doc = docs[item.record_key]
    local old_member, old_claimant = index_member(doc), doc.claimant
    local old_lock = lock_of(doc.namespace, doc.key)
    if item.mode == 'full' then
      doc.key = item.key
      doc.secondary_key = item.secondary_key
      doc.content = item.content
    end
    local new_lock = lock_of(doc.namespace, doc.key)
    -- The locks' versions as they were before this call (lock writes come after this loop),
    -- which is also what an item named through its set was checked against.
    local floor = doc.version
    if old_lock then floor = math.max(floor, old_lock.version) end
    if new_lock then floor = math.max(floor, new_lock.version) end
    doc.version = floor + 1
    fold_into(old_lock, doc.version)
    fold_into(new_lock, doc.version)
    doc.modified = now
    take_arrival(doc, item.at)
    local member = index_member(doc)
    if member ~= old_member then
      redis.call('ZREM', prefix .. 'dk:' .. doc.namespace, old_member)
      redis.call('ZADD', prefix .. 'dk:' .. doc.namespace, 0, member)
    end
    index_doc_claim(doc, old_claimant)
    store_doc(doc)
    changed_docs[j] = doc_reply(doc)
  end
end

-- Set lease changes, after the member writes: the lock goes above every member version,
-- those written just now included.
for j, item in ipairs(doc_changes) do
  if item.is_set then
    local lock = sets[item.record_key]
    lock.version = math.max(lock.version, lock.highest) + 1
    take_arrival(lock, item.at)
    if not lock.dirty then
      lock.dirty = true
      dirty_sets[#dirty_sets + 1] = lock
    end
    changed_docs[j] = {lock.namespace, '', lock.version, lock.claimant, lock.at, lock.key, '', '', 0, 0}
  end
end
for _, lock in ipairs(dirty_sets) do
  redis.call('SET', lock.record_key, struct.pack(SET_RECORD_FORMAT, 4, lock.version, lock.highest, lock.at,
    #lock.claimant, lock.claimant))
end

-- An inserted doc is never held (claimant ""), whatever its arrival, as in EntroQ. Its version
-- 0 is below every lock version (a lock's first write gives it 1 or more), so it needs no
-- ordering and changes no set's highest member version.
local inserted_docs = {}
for j, item in ipairs(doc_inserts) do
  local doc = {
    record_key = item.record_key, namespace = item.namespace, id = item.id, version = 0, at = item.at,
    created = now, modified = now, key = item.key, secondary_key = item.secondary_key, claimant = '',
    content = item.content,
  }
  redis.call('ZADD', prefix .. 'dk:' .. doc.namespace, 0, index_member(doc))
  redis.call('ZADD', prefix .. 'dn', 'NX', 0, doc.namespace)
  store_doc(doc)
  inserted_docs[j] = doc_reply(doc)
end

if notify ~= '' then
  for queue, entry in pairs(wake) do
    if entry.available > 0 or entry.future ~= nil then
      local wait = entry.future and (entry.future - now) or -1
      redis.call(notify, prefix .. 'wake', entry.available .. ':' .. score(wait) .. ':' .. queue)
    end
  end
end

return {1, inserted, changed, inserted_docs, changed_docs}
