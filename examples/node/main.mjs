// Drives entroq-redis's Lua scripts straight from Node with node-redis, knowing only
// lua/README.md (no Python involved): insert a task with a binary value, claim it, renew
// its lease, delete it, and check that stale and foreign commits are refused; then the same
// for docs: insert, list, claim by key, claim a doc set, release it, read namespace stats.
//
// Usage: node main.mjs [--url redis://127.0.0.1:6379] [--namespace node-example]
//                      [--lua-dir ../../lua] [--flush-scripts]
//
// Prints one JSON summary on stdout; exits 1 if any check fails, 2 on an unexpected error.
// It leaves one task and one doc behind (the "handoff" task and doc, see the end) so that
// another client can read what Node wrote.

import { createHash, randomBytes, randomInt } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { createClient, RESP_TYPES } from 'redis';

const SCRIPT_NAMES = [
  'claim', 'claim_id', 'modify', 'tasks', 'queues', 'time', 'docs', 'claim_docs', 'claim_doc_sets', 'namespaces',
];
// lua/README.md section 4: bulk strings may hold binary values, so read every one as a Buffer.
const AS_BUFFERS = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } };

const { values: options } = parseArgs({
  options: {
    url: { type: 'string', default: process.env.ENTROQ_REDIS_URL ?? 'redis://127.0.0.1:6379' },
    namespace: { type: 'string', default: 'node-example' },
    'lua-dir': {
      type: 'string',
      default: path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'lua'),
    },
    'flush-scripts': { type: 'boolean', default: false },
  },
});

/** Loads each script once and calls it by SHA1, reloading on NOSCRIPT (lua/README.md section 1). */
class Scripts {
  constructor(client, luaDir) {
    this.client = client;
    this.sources = {};
    this.shas = {};
    this.noscriptFallbacks = 0;
    for (const name of SCRIPT_NAMES) {
      const source = readFileSync(path.join(luaDir, `${name}.lua`));
      this.sources[name] = source;
      this.shas[name] = createHash('sha1').update(source).digest('hex');
    }
  }

  async call(name, prefix, args, contract = '3') {
    // KEYS[1] = <prefix>queues, ARGV[1] = <prefix>, ARGV[2] = contract version.
    const command = ['EVALSHA', this.shas[name], '1', `${prefix}queues`, prefix, contract, ...args.map(encode)];
    try {
      return await this.client.sendCommand(command, AS_BUFFERS);
    } catch (error) {
      if (!String(error?.message).startsWith('NOSCRIPT')) throw error;
      this.noscriptFallbacks += 1;
      const sha = String(await this.client.sendCommand(['SCRIPT', 'LOAD', this.sources[name]], AS_BUFFERS));
      if (sha !== this.shas[name]) throw new Error(`SCRIPT LOAD of ${name}.lua returned ${sha}, expected ${this.shas[name]}`);
      return await this.client.sendCommand(command, AS_BUFFERS);
    }
  }

  /** Like call, but returns the error reply's message instead of throwing it. */
  async callForError(name, prefix, args, contract = '3') {
    try {
      await this.call(name, prefix, args, contract);
      return null;
    } catch (error) {
      return String(error?.message);
    }
  }
}

// lua/README.md section 1: integers are plain decimal strings, text and values raw bytes.
function encode(arg) {
  if (Buffer.isBuffer(arg)) return arg;
  if (typeof arg === 'number') {
    if (!Number.isSafeInteger(arg)) throw new Error(`not an integer argument: ${arg}`);
    return String(arg);
  }
  return Buffer.from(String(arg), 'utf8');
}

// lua/README.md section 4: a task is an 11-element array in this order.
function decodeTask(fields) {
  const [queue, id, version, atMs, claimant, value, createdMs, modifiedMs, claims, attempt, err] = fields;
  return {
    queue: queue.toString('utf8'),
    id: id.toString('utf8'),
    version,
    atMs,
    claimant: claimant.toString('utf8'),
    value,
    createdMs,
    modifiedMs,
    claims,
    attempt,
    err: err.toString('utf8'),
  };
}

// lua/README.md section 4: a doc (or a doc set's lock, with an empty ID) is a 10-element array.
function decodeDoc(fields) {
  const [namespace, id, version, claimant, atMs, key, secondaryKey, content, createdMs, modifiedMs] = fields;
  return {
    namespace: namespace.toString('utf8'),
    id: id.toString('utf8'),
    version,
    claimant: claimant.toString('utf8'),
    atMs,
    key: key.toString('utf8'),
    secondaryKey: secondaryKey.toString('utf8'),
    content,
    createdMs,
    modifiedMs,
  };
}

// lua/README.md section 4: a doc failure.
function decodeDocFailures(failures) {
  return failures.map(([kind, reason, namespace, id, version, currentVersion, key]) => ({
    kind: kind.toString(),
    reason: reason.toString(),
    namespace: namespace.toString('utf8'),
    id: id.toString('utf8'),
    version,
    currentVersion,
    key: key.toString('utf8'),
  }));
}

function decodeFailures(failures) {
  return failures.map(([kind, reason, id, version, queue, currentVersion]) => ({
    kind: kind.toString(),
    reason: reason.toString(),
    id: id.toString('utf8'),
    version,
    queue: queue.toString('utf8'),
    currentVersion,
  }));
}

// lua/README.md section 6, "Generated IDs": the UUIDv4 modify.lua derives from id_seed for insert i.
function expectedGeneratedId(idSeed, index) {
  const h = createHash('sha1').update(Buffer.concat([idSeed, Buffer.from(`:${index}`)])).digest('hex');
  const variant = '89ab'[parseInt(h[16], 16) % 4];
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

const checks = [];
function check(name, ok, detail = undefined) {
  checks.push(ok ? { name, ok: true } : { name, ok: false, detail });
  return ok;
}
function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function storeNow(client) {
  // lua/README.md section 11: the store's clock, in ms.
  const [seconds, micros] = await client.sendCommand(['TIME'], AS_BUFFERS);
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

async function waitFor(predicate, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 5));
  return predicate();
}

async function main() {
  const client = createClient({ url: options.url });
  client.on('error', (error) => console.error(`redis client error: ${error.message}`));
  await client.connect();
  const subscriber = client.duplicate();
  subscriber.on('error', (error) => console.error(`redis subscriber error: ${error.message}`));
  await subscriber.connect();
  try {
    return await run(client, subscriber);
  } finally {
    await subscriber.quit();
    await client.quit();
  }
}

async function run(client, subscriber) {
  const scripts = new Scripts(client, options['lua-dir']);
  if (options['flush-scripts']) await client.sendCommand(['SCRIPT', 'FLUSH']);

  const prefix = `{${options.namespace}}:`;
  const worker = `node-worker-${randomBytes(6).toString('hex')}`;
  const intruder = `node-intruder-${randomBytes(6).toString('hex')}`;
  // A name with a space, a colon (wake messages split on the first two only) and non-ASCII.
  const queue = 'node/demo: queue \u00fc';
  const value = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

  // lua/README.md section 10: subscribe before the first claim attempt.
  const wakes = [];
  await subscriber.subscribe(`${prefix}wake`, (message) => wakes.push(message));

  // One slot per task wanted: rank_random 0 .. 2^52-1 and order_random 0 .. 2^31-1, fresh
  // for every slot (lua/README.md section 11).
  const randoms = (k) =>
    Array.from({ length: k }, () => [randomInt(2 ** 26) * 2 ** 26 + randomInt(2 ** 26), randomInt(2 ** 31)]).flat();
  const claim = async (claimant, durationMs, queues, k = 1) =>
    // n_finish 0, n_queues, k slots in the "shared" form (lua/README.md section 5).
    scripts.call('claim', prefix, [claimant, durationMs, 0, queues.length, k, 'shared', ...queues, ...randoms(k)]);
  const modify = async (
    claimant,
    { inserts = [], changes = [], deletes = [], depends = [], docInserts = [], docChanges = [], docDeletes = [] },
    idSeed = '',
  ) =>
    scripts.call('modify', prefix, [
      // The four task counts, then the four doc counts (lua/README.md section 6); no doc depends here.
      claimant, idSeed, 'PUBLISH', inserts.length, changes.length, deletes.length, depends.length,
      docInserts.length, docChanges.length, docDeletes.length, 0,
      ...inserts.flat(), ...changes.flat(), ...deletes.flat(), ...depends.flat(),
      ...docInserts.flat(), ...docChanges.flat(), ...docDeletes.flat(),
    ]);

  // Caller bugs are error replies, not statuses (lua/README.md section 4).
  const noQueues = await scripts.callForError('claim', prefix, [worker, 1000, 0, 0, 1, 'shared', 0, 0]);
  check('claim without queues is EQ_BADARG', noQueues?.startsWith('EQ_BADARG') === true, noQueues);
  const wrongContract = await scripts.callForError('claim', prefix, [worker, 1000, 0, 1, 1, 'shared', queue, 0, 0], '2');
  check('wrong contract version is EQ_CONTRACT', wrongContract?.startsWith('EQ_CONTRACT') === true, wrongContract);

  // lua/README.md section 8a: the store's clock (the one every lease is measured on).
  const [clockMs] = await scripts.call('time', prefix, []);
  check('time.lua reads the store clock', Math.abs(Number(clockMs) - Date.now()) < 5000, Number(clockMs));

  // Nothing to claim yet: {0, -1}.
  const empty = await claim(worker, 1000, [queue]);
  check('claim on an empty queue replies {0, -1}', same(empty, [0, -1]), empty);

  // Insert with a generated ID, available now (at_mode "by", ms 0).
  const before = await storeNow(client);
  const idSeed = randomBytes(16);
  const insertReply = await modify(worker, { inserts: [['', queue, 'by', 0, value, 0, '']] }, idSeed);
  check('insert replies {1, inserted, changed}', insertReply[0] === 1 && insertReply[1].length === 1 && insertReply[2].length === 0, insertReply);
  const inserted = decodeTask(insertReply[1][0]);
  check('generated ID follows lua/README.md section 6', inserted.id === expectedGeneratedId(idSeed, 1), inserted.id);
  check('insert: version 0, claims 0', inserted.version === 0 && inserted.claims === 0, inserted);
  check('insert: claimant is the inserter', inserted.claimant === worker, inserted.claimant);
  check('insert: value round-trips all 256 byte values', value.equals(inserted.value));
  check('insert: at = created = modified = store now',
    inserted.atMs === inserted.createdMs && inserted.createdMs === inserted.modifiedMs && inserted.atMs >= before,
    inserted);
  check('insert: wake message "1:-1:<queue>"', await waitFor(() => wakes.includes(`1:-1:${queue}`), 2000), wakes);

  // Claim (duplicates and a queue that does not exist are fine).
  const claimReply = await claim(worker, 10000, [queue, queue, 'node/no such queue']);
  const claimed = claimReply[0] === 1 && claimReply[1].length === 1 ? decodeTask(claimReply[1][0]) : null;
  check('claim replies {1, [task]}', claimed !== null, claimReply);
  if (claimed === null) return { scripts };
  check('claim: same task', claimed.id === inserted.id && claimed.queue === queue);
  check('claim: version + 1, claims + 1', claimed.version === 1 && claimed.claims === 1, claimed);
  check('claim: at = modified + duration', claimed.atMs === claimed.modifiedMs + 10000, claimed);
  check('claim: claimant set, created kept, value kept',
    claimed.claimant === worker && claimed.createdMs === inserted.createdMs && value.equals(claimed.value), claimed);

  // Claimed by us: nothing else to claim, and wait_ms tells when the lease runs out.
  const waitReply = await claim(intruder, 1000, [queue]);
  check('claim of a leased queue replies {0, wait_ms} with 0 < wait_ms <= lease',
    waitReply[0] === 0 && waitReply[1] > 0 && waitReply[1] <= 10000, waitReply);

  // claim_id.lua (lua/README.md section 5a): a task under a live lease is not claimed by ID, and an
  // unknown ID replies {-1, -1}; neither writes anything.
  const byIdLeased = await scripts.call('claim_id', prefix, [intruder, 1000, claimed.id, queue]);
  check('claim_id of a leased task replies {0, wait_ms} with 0 < wait_ms <= lease',
    byIdLeased[0] === 0 && byIdLeased[1] > 0 && byIdLeased[1] <= 10000, byIdLeased);
  const byIdMissing = await scripts.call('claim_id', prefix, [intruder, 1000, 'node-no-such-task', '']);
  check('claim_id of an unknown ID replies {-1, -1}', same(byIdMissing, [-1, -1]), byIdMissing);

  // Renew the lease: a "lease" change moves only the arrival (lua/README.md section 6).
  const renewReply = await modify(worker, {
    changes: [[claimed.id, claimed.version, queue, 'lease', '', 'by', 30000, '', 0, '']],
  });
  const renewed = renewReply[0] === 1 ? decodeTask(renewReply[2][0]) : null;
  check('renew replies {1, [], [task]}', renewed !== null && renewReply[1].length === 0, renewReply);
  if (renewed === null) return { scripts };
  check('renew: version + 1, claims kept', renewed.version === 2 && renewed.claims === 1, renewed);
  check('renew: at = modified + 30000, claimant kept', renewed.atMs === renewed.modifiedMs + 30000 && renewed.claimant === worker, renewed);
  check('renew: queue, value, attempt, err kept',
    renewed.queue === queue && value.equals(renewed.value) && renewed.attempt === 0 && renewed.err === '', renewed);

  // Stats while leased: 1 task, 0 available, 1 claimed, 0 future, max_claims 1.
  const stats = await scripts.call('queues', prefix, ['stats', 10, '', 0, queue]);
  check('queue stats while leased', same([stats[0], stats[1].map((row) => [row[0].toString('utf8'), ...row.slice(1)])],
    [0, [[queue, 1, 0, 1, 0, 1]]]), stats);

  // Another claimant cannot delete a task under a live lease, even naming the right version.
  const foreign = await modify(intruder, { deletes: [[renewed.id, renewed.version, '']] });
  check('delete by another claimant is refused as CLAIM',
    foreign[0] === 0 && same(decodeFailures(foreign[1]), [
      { kind: 'CLAIM', reason: 'claimed', id: renewed.id, version: 2, queue, currentVersion: 2 },
    ]), foreign);

  // A stale version (the one the claim returned, before the renewal) is refused.
  const stale = await modify(worker, { deletes: [[claimed.id, claimed.version, queue]] });
  check('stale delete is refused as DELETE mismatch',
    stale[0] === 0 && same(decodeFailures(stale[1]), [
      { kind: 'DELETE', reason: 'mismatch', id: claimed.id, version: 1, queue, currentVersion: 2 },
    ]), stale);

  // The current version deletes it.
  const deleted = await modify(worker, { deletes: [[renewed.id, renewed.version, queue]] });
  check('delete with the current version replies {1, [], [], [], []}', same(deleted, [1, [], [], [], []]), deleted);
  const gone = await scripts.call('tasks', prefix, ['', '', 1, 0, '0', renewed.id]);
  check('deleted task is gone', same(gone, [-1, []]), gone);
  const again = await modify(worker, { deletes: [[renewed.id, renewed.version, '']] });
  check('delete of a deleted task is refused as DELETE missing, current_version -1',
    again[0] === 0 && same(decodeFailures(again[1]), [
      { kind: 'DELETE', reason: 'missing', id: renewed.id, version: 2, queue: '', currentVersion: -1 },
    ]), again);

  // claim_id.lua on an available task: the same effect as a claim.
  const pickId = `node-pick-${randomBytes(6).toString('hex')}`;
  await modify(worker, { inserts: [[pickId, queue, 'at', 0, 'pick me', 0, '']] });
  const pickReply = await scripts.call('claim_id', prefix, [intruder, 5000, pickId, queue]);
  const picked = pickReply[0] === 1 ? decodeTask(pickReply[1]) : null;
  check('claim_id of an available task: version + 1, claims + 1, claimant, at = modified + duration',
    picked !== null && picked.id === pickId && picked.version === 1 && picked.claims === 1 &&
      picked.claimant === intruder && picked.atMs === picked.modifiedMs + 5000, pickReply);
  if (picked === null) return { scripts };
  const pickDone = await modify(intruder, { deletes: [[pickId, picked.version, queue]] });
  check('the claimant of claim_id deletes its task', same(pickDone, [1, [], [], [], []]), pickDone);

  // A batch (lua/README.md section 5): 3 tasks, 5 slots with a 0 ms lease: the 3, each once, and
  // a finish of all 3 with a claim that then finds nothing ({0, -1}: the queue is empty).
  const batchQueue = `${queue}/batch`;
  await modify(worker, { inserts: [0, 1, 2].map((i) => ['', batchQueue, 'at', 0, `b${i}`, 0, '']) }, randomBytes(16));
  const batch = await claim(worker, 0, [batchQueue], 5);
  const batchTasks = batch[0] === 1 ? batch[1].map(decodeTask) : [];
  check('a 5-slot claim of 3 tasks replies {1, tasks} with the 3, each once, version 1',
    batchTasks.length === 3 && new Set(batchTasks.map((t) => t.id)).size === 3 &&
      batchTasks.every((t) => t.version === 1 && t.claimant === worker), batch);
  const finishAll = batchTasks.flatMap((t) => [t.id, t.version, batchQueue]);
  const batchDone = await scripts.call('claim', prefix,
    [worker, 0, batchTasks.length, 1, 2, 'shared', ...finishAll, batchQueue, ...randoms(2)]);
  check('finishing the batch and claiming again replies {0, -1}', same(batchDone, [0, -1]), batchDone);

  const docFacts = await runDocs(scripts, prefix, modify, worker, intruder, value);

  // Leave one task with a caller-chosen ID for another language to read.
  const handoffId = `node-handoff-${randomBytes(6).toString('hex')}`;
  const handoff = await modify(worker, { inserts: [[handoffId, queue, 'at', 0, value, 7, 'from node']] });
  check('handoff insert with a caller-chosen ID', handoff[0] === 1 && decodeTask(handoff[1][0]).id === handoffId, handoff);

  return {
    scripts,
    taskId: inserted.id,
    versions: [inserted.version, claimed.version, renewed.version],
    claims: [inserted.claims, claimed.claims, renewed.claims],
    handoff: { id: handoffId, queue, claimant: worker },
    ...docFacts,
  };
}

// lua/README.md sections 6 and 8b-8e: docs, from insert to namespace stats.
async function runDocs(scripts, prefix, modify, worker, intruder, value) {
  // A doc namespace and keys with the key layout's own separators and non-ASCII.
  const docNs = 'node docs: {x}\u00fc';
  const key = 'customer:42';
  const inserted = await modify(worker, {
    docInserts: [
      // namespace, id, key, secondary_key, at_mode, ms, content
      [docNs, 'node-doc-b', key, '2', 'by', 0, Buffer.from('{"n":2}')],
      [docNs, 'node-doc-a', key, '1', 'by', 0, value],
      [docNs, 'node-doc-c', 'other', '', 'by', 0, ''],
    ],
  });
  const insertedDocs = inserted[0] === 1 ? inserted[3].map(decodeDoc) : [];
  check('doc inserts come back as docs, version 0, no claimant', insertedDocs.length === 3 &&
      insertedDocs.every((d) => d.version === 0 && d.claimant === '' && d.namespace === docNs), inserted);

  // Listing: the whole namespace in (key, secondary key, id) order, a key range, IDs.
  const listed = await scripts.call('docs', prefix, [docNs, '', '', 10, 0, '0']);
  check('docs.lua lists by key, then secondary key', listed[0] === -1 &&
      same(listed[1].map((d) => decodeDoc(d).id), ['node-doc-a', 'node-doc-b', 'node-doc-c']), listed);
  check('a listed doc carries its content byte for byte', decodeDoc(listed[1][0]).content.equals(value), listed[1][0]);
  const ranged = await scripts.call('docs', prefix, [docNs, key, 'other', 10, 0, '1']);
  check('docs.lua key range [start, end) without contents', same(ranged[1].map((d) => decodeDoc(d).id),
      ['node-doc-a', 'node-doc-b']) && ranged[1].every((d) => decodeDoc(d).content.length === 0), ranged);
  const paged = await scripts.call('docs', prefix, [docNs, '', '', 2, 0, '1']);
  check('docs.lua pages: next_cursor = cursor + limit while docs remain', paged[0] === 2 && paged[1].length === 2, paged);
  const byId = await scripts.call('docs', prefix, [docNs, '', '', 1, 0, '1', 'node-doc-c', 'missing', 'node-doc-a']);
  check('docs.lua by IDs: order asked, missing skipped', same(byId[1].map((d) => decodeDoc(d).id),
      ['node-doc-c', 'node-doc-a']), byId);

  // A key claim: every doc of the key, all or nothing.
  const claimed = await scripts.call('claim_docs', prefix, [worker, 5000, docNs, key]);
  const claimedDocs = claimed[0] === 1 ? claimed[1].map(decodeDoc) : [];
  check('claim_docs claims every doc of the key by secondary key', same(claimedDocs.map((d) => d.id),
      ['node-doc-a', 'node-doc-b']) && claimedDocs.every((d) => d.version === 1 && d.claimant === worker &&
      d.atMs === d.modifiedMs + 5000), claimed);
  const refusedKey = await scripts.call('claim_docs', prefix, [intruder, 5000, docNs, key]);
  check('claim_docs by another claimant names each held doc', refusedKey[0] === 0 &&
      same(decodeDocFailures(refusedKey[1]).map((f) => [f.kind, f.reason, f.id, f.version]),
        [['CLAIM', 'claimed', 'node-doc-a', 1], ['CLAIM', 'claimed', 'node-doc-b', 1]]), refusedKey);

  // A set claim: the lock of (namespace, "other"), with its member returned.
  const set = await scripts.call('claim_doc_sets', prefix, [intruder, 60000, '', 0, '', 1, docNs, 'other', '0']);
  const lock = set[0] === 1 ? decodeDoc(set[1][0]) : null;
  check('claim_doc_sets returns the lock as a set reference and its members', lock !== null &&
      lock.id === '' && lock.key === 'other' && lock.version === 1 && lock.claimant === intruder &&
      same(set[2].map((d) => decodeDoc(d).id), ['node-doc-c']), set);
  const refusedSet = await scripts.call('claim_doc_sets', prefix, [worker, 60000, '', 0, '', 1, docNs, 'other', '1']);
  check('a held set refuses another claimant, naming the set', refusedSet[0] === 0 &&
      same(decodeDocFailures(refusedSet[2]).map((f) => [f.kind, f.id, f.key, f.version]),
        [['CLAIM', '', 'other', 1]]), refusedSet);
  const stats = await scripts.call('namespaces', prefix, [10, '', 0, docNs]);
  check('namespaces.lua counts docs and live holds (a set lock holds no doc)', stats[0] === 0 &&
      stats[1].length === 1 && stats[1][0][0].toString('utf8') === docNs && stats[1][0][1] === 3 &&
      stats[1][0][2] === 2, stats);

  // The set holder releases the lock with a set lease change; the key claimant deletes its docs.
  const released = await modify(intruder, {
    // namespace, id ("" = the set), version, mode, key, secondary_key, at_mode, ms, content
    docChanges: [[docNs, '', 1, 'lease', 'other', '', 'by', 0, '']],
  });
  const releasedLock = released[0] === 1 ? decodeDoc(released[4][0]) : null;
  check('a set lease change releases the lock (version + 1, no claimant)', releasedLock !== null &&
      releasedLock.version === 2 && releasedLock.claimant === '' && releasedLock.key === 'other', released);
  const cleaned = await modify(worker, {
    docDeletes: [[docNs, 'node-doc-a', 1], [docNs, 'node-doc-b', 1], [docNs, 'node-doc-c', 0]],
  });
  check('the docs are deleted at their versions', same(cleaned, [1, [], [], [], []]), cleaned);
  const none = await scripts.call('namespaces', prefix, [10, '', 1, 'node docs']);
  check('a doc namespace without docs is not listed', same(none, [0, []]), none);

  // Leave one doc for another language to read.
  const handoffDoc = await modify(worker, {
    docInserts: [[docNs, 'node-doc-handoff', key, 'h', 'by', 0, value]],
  });
  check('handoff doc insert', handoffDoc[0] === 1, handoffDoc);
  return { handoffDoc: { namespace: docNs, id: 'node-doc-handoff', key } };
}

let exitCode = 0;
let summary;
try {
  const { scripts, ...facts } = await main();
  const failed = checks.filter((c) => !c.ok);
  summary = {
    ok: failed.length === 0,
    namespace: options.namespace,
    passed: checks.length - failed.length,
    failed: failed.length,
    noscript_fallbacks: scripts.noscriptFallbacks,
    ...facts,
    checks,
  };
  exitCode = failed.length === 0 ? 0 : 1;
} catch (error) {
  summary = { ok: false, error: String(error?.stack ?? error), checks };
  exitCode = 2;
}
// Buffers in failure details print as their bytes, not as {type, data} objects.
console.log(JSON.stringify(summary, (key, v) => (v?.type === 'Buffer' && Array.isArray(v.data) ? Buffer.from(v.data).toString('latin1') : v), 2));
process.exitCode = exitCode;
