// BullMQ for Node, the same-run comparison of `benchmarks/run.py --only peers` (benchmarks/_peers.py).
//
//   node bullmq_bench.mjs fill '{"url": ..., "prefix": ..., "queue": ..., "count": N}'
//       adds N no-op jobs with Queue.addBulk (1,000 per call); prints {"added", "seconds"}.
//   node bullmq_bench.mjs work '{"url": ..., "prefix": ..., "queue": ..., "concurrency": C, "progress": PATH}'
//       runs BullMQ's own Worker with a no-op processor and concurrency C: connects, writes 0 to
//       PATH (ready), starts when a line arrives on stdin, writes its completion count to PATH
//       every 100 ms; when stdin closes it closes the worker and prints
//       {"jobs", "first", "last", "cpu_s"} (first/last: Unix seconds of its first and last
//       completion; cpu_s: this process's CPU time from the first completion to the last).
//
// The same protocol as the Python peers (benchmarks/_peer_clients.py). Completed jobs are removed
// (removeOnComplete: {count: 0}), as our Worker deletes a finished task.
import { writeFileSync, renameSync } from "node:fs";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";
import { Queue, Worker } from "bullmq";

const [mode, raw] = process.argv.slice(2);
const spec = JSON.parse(raw);
const url = new URL(spec.url);
// maxRetriesPerRequest: null is what BullMQ requires of a Worker's ioredis connection.
const connection = {
  host: url.hostname,
  port: Number(url.port || 6379),
  db: Number(url.pathname.slice(1) || 0),
  username: decodeURIComponent(url.username) || undefined,
  password: decodeURIComponent(url.password) || undefined,
  maxRetriesPerRequest: null,
};
const now = () => (performance.timeOrigin + performance.now()) / 1000;
const cpu = () => {
  const used = process.cpuUsage();
  return (used.user + used.system) / 1e6;
};

if (mode === "fill") {
  const queue = new Queue(spec.queue, { connection, prefix: spec.prefix });
  const began = now();
  for (let done = 0; done < spec.count; ) {
    const size = Math.min(1000, spec.count - done);
    const jobs = Array.from({ length: size }, () => ({ name: "noop", data: {} }));
    await queue.addBulk(jobs);
    done += size;
  }
  const seconds = now() - began;
  await queue.close();
  console.log(JSON.stringify({ added: spec.count, seconds }));
} else if (mode === "work") {
  let jobs = 0;
  let first = null;
  let last = null;
  let cpuFirst = null;
  let cpuLast = null;
  const worker = new Worker(
    spec.queue,
    async () => {
      const t = now();
      if (first === null) {
        first = t;
        cpuFirst = cpu();
      }
      last = t;
      cpuLast = cpu();
      jobs += 1;
    },
    { connection, prefix: spec.prefix, concurrency: spec.concurrency, removeOnComplete: { count: 0 }, autorun: false },
  );
  await worker.waitUntilReady();
  const progress = () => {
    writeFileSync(spec.progress + ".tmp", String(jobs));
    renameSync(spec.progress + ".tmp", spec.progress);
  };
  progress();
  const lines = createInterface({ input: process.stdin });
  let running = null;
  lines.once("line", () => {
    running = worker.run();
  });
  const ticker = setInterval(progress, 100);
  lines.on("close", async () => {
    clearInterval(ticker);
    await worker.close();
    if (running !== null) await running;
    const cpu_s = cpuFirst === null ? null : cpuLast - cpuFirst;
    console.log(JSON.stringify({ jobs, first, last, cpu_s }));
    process.exit(0);
  });
} else {
  console.error(`unknown mode ${mode}: fill or work`);
  process.exit(2);
}
