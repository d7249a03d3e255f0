/**
 * `npm run bench:micro`: benchmark.js 2.1.4 suites for the hot paths (issue 7), ops/s ± rme.
 * benchmark.js has no percentiles (node-platform.md §3); latency distributions are
 * `smmu-sim bench`'s job. Usage: node --import tsx bench/micro.ts [--quick] [--json]
 *
 * Suites: command encode (API edge), decode, the legality check the device runs per command,
 * ring pointer arithmetic, TLB lookup and invalidation, and a spin-mode doorbell round trip run
 * inside a worker (bare, and through the model: driver → MMIO FIFO → device → CMD_SYNC MSI).
 */
import Benchmark from 'benchmark';
import { parseArgs } from 'node:util';
import * as ring from '../src/ring/index.ts';
import { parseWaitPolicy } from '../src/mem/wait.ts';
import { decodeCommand, encodeCommandWords } from '../src/spec/command-codec.ts';
import { FULL_FEATURES } from '../src/spec/features.ts';
import { checkCommand } from '../src/spec/legality.ts';
import { REGIME, TLB_KIND, Tlb, tgCode } from '../src/device/tlb.ts';
import { PERM } from '../src/device/walk.ts';
import { spawnWorker } from '../src/system/spawn.ts';
import { System } from '../src/system/system.ts';
import { floorBufferBytes, resetFloor } from './floor.ts';
import type { FloorWorkerData } from './floor-worker.ts';
import { machineFacts } from './machine.ts';
import type { MicroResult, MicroWorkerRequest } from './micro-worker.ts';
import { WorkerLink } from './workers.ts';
import { TLBI_VA_PAGE, TLBI_VA_RANGE } from './workloads.ts';

const { values } = parseArgs({ options: { quick: { type: 'boolean' }, json: { type: 'boolean' } }, strict: true });
/** Seconds benchmark.js spends per benchmark (its default is 5). */
const MAX_TIME = values.quick ? 0.5 : 2;
const say = (s: string): void => {
  if (!values.json) process.stdout.write(`${s}\n`);
};

/** A value the benchmarks write so the JIT cannot drop their work. */
let sink = 0;

function suite(name: string, cases: Record<string, () => void>): MicroResult[] {
  say(`\n${name}`);
  const out: MicroResult[] = [];
  const s = new Benchmark.Suite(name);
  for (const [k, fn] of Object.entries(cases)) s.add(k, fn, { maxTime: MAX_TIME });
  s.on('cycle', (e: Benchmark.Event) => {
    const b = e.target as unknown as Benchmark;
    if (b.error) throw b.error;
    out.push({ name: `${name}: ${b.name}`, hz: b.hz, rme: b.stats.rme, samples: b.stats.sample.length, mean_ns: b.stats.mean * 1e9 });
    say(`  ${String(b)}  (${(b.stats.mean * 1e9).toFixed(1)} ns/op)`);
  });
  s.run({ async: false });
  return out;
}

const results: MicroResult[] = [];

results.push(
  ...suite('encode (API edge: field values to four words)', {
    'CMD_TLBI_NH_VA, one page': () => {
      sink ^= encodeCommandWords({ name: 'CMD_TLBI_NH_VA', VMID: 1, ASID: 5, Address: 0x7f12_3456_7000n, Leaf: 1 })[0]!;
    },
    'CMD_SYNC, MSI': () => {
      sink ^= encodeCommandWords({ name: 'CMD_SYNC', CS: 'SIG_IRQ', MSH: 3, MSIAttr: 0xf, MSIAddress: 0x4000_1230 })[0]!;
    },
  }),
);

results.push(
  ...suite('decode (four words to named fields)', {
    'CMD_TLBI_NH_VA with range fields': () => {
      sink ^= decodeCommand(TLBI_VA_RANGE).opcode;
    },
  }),
);

const illegal = encodeCommandWords({ name: 'CMD_SYNC', CS: 3 });
results.push(
  ...suite('legality check (what the device runs per command)', {
    'legal CMD_TLBI_NH_VA': () => {
      sink ^= checkCommand(TLBI_VA_PAGE, FULL_FEATURES).ok ? 1 : 0;
    },
    'illegal CMD_SYNC (CS = 0b11)': () => {
      sink ^= checkCommand(illegal, FULL_FEATURES).ok ? 1 : 0;
    },
  }),
);

let p = 0;
let c = 0;
results.push(
  ...suite('ring arithmetic (256 entries)', {
    'inc + space + consumed + isFull': () => {
      p = ring.inc(p, 3, 8);
      c = ring.inc(c, 3, 8);
      sink ^= ring.space(p, c, 8) + (ring.consumed(c, p, 8) ? 1 : 0) + (ring.isFull(p, c, 8) ? 1 : 0);
    },
  }),
);

// TLB lookup and invalidation (src/device/tlb.ts): a stage 1 TLB of 4096 4 KiB entries of one
// VMID and ASID, as the device's translation fills it.
const TLB_ENTRIES = 4096;
const PAGE_LOG2 = 12;
const VMID = 1;
const ASID = 5;
const tlb = new Tlb({ entries: TLB_ENTRIES, replacement: 'lru' });
const tg4k = tgCode(PAGE_LOG2);
const fill = (page: number): void => {
  tlb.insertVa(TLB_KIND.S1, REGIME.EL1, VMID, ASID, 0, page, PAGE_LOG2, page, PAGE_LOG2, 3, tg4k, page * 4096, page * 4096, PERM.R | PERM.W, 0);
};
for (let pg = 0; pg < TLB_ENTRIES - 1; pg++) fill(pg);
// The page TLBI_VA_PAGE names (VA[55:12]), cached too.
const victim = Number(0x7f12_3456_7000n >> 12n);
fill(victim);
const inval = { features: FULL_FEATURES, e2h: false, vmw: 0, overInvalidate: false };
let probe = 0;
results.push(
  ...suite(`TLB (${TLB_ENTRIES} stage 1 entries, LRU)`, {
    'lookup, hit': () => {
      probe = (probe + 1) & (TLB_ENTRIES - 2);
      sink ^= tlb.lookupVa(TLB_KIND.S1, REGIME.EL1, VMID, ASID, 0, probe) === undefined ? 1 : 0;
    },
    'lookup, miss': () => {
      sink ^= tlb.lookupVa(TLB_KIND.S1, REGIME.EL1, VMID, ASID + 1, 0, probe) === undefined ? 1 : 0;
    },
    'CMD_TLBI_NH_VA of a cached page, then its refill': () => {
      sink ^= tlb.invalidate(TLBI_VA_PAGE, inval);
      fill(victim);
    },
  }),
);

// The doorbell round trips, inside a worker, spin mode: first the bare buffer (the floor's echo
// worker on the other side), then, with nothing else spinning, through the model's device.
say('\ndoorbell round trip in a worker (spin)');
const policy = parseWaitPolicy('spin');
const micro = new WorkerLink(spawnWorker(import.meta.url, './micro-worker'), 'micro worker');
try {
  const floorSab = new SharedArrayBuffer(floorBufferBytes(1));
  resetFloor(new Int32Array(floorSab));
  const echoData: FloorWorkerData = { sab: floorSab };
  const echo = new WorkerLink(spawnWorker(import.meta.url, './floor-worker', { workerData: echoData }), 'echo worker');
  try {
    const pong = echo.call({ type: 'rtt', side: 'b', policy, warmup: 0, samples: 0, maxMs: 0 }, 120_000);
    const bare = micro.call<{ result: MicroResult }>({ type: 'bare', sab: floorSab, policy, maxTime: MAX_TIME } satisfies MicroWorkerRequest, 120_000);
    const r = (await bare).result;
    await pong;
    results.push(r);
    say(`  ${r.name} x ${Math.round(r.hz).toLocaleString('en-US')} ops/sec ±${r.rme.toFixed(2)}% (${r.samples} runs sampled)  (${r.mean_ns.toFixed(1)} ns/op)`);
  } finally {
    await echo.close();
  }
  const sys = await System.start({ policy, driver: false });
  try {
    const ram = { start: sys.board.layout.ram.base, end: sys.board.layout.ram.base + sys.board.layout.ram.bytes };
    const req: MicroWorkerRequest = { type: 'model', sab: sys.board.sab, layout: sys.board.layout, ram, policy, maxTime: MAX_TIME };
    const r = (await micro.call<{ result: MicroResult }>(req, 120_000)).result;
    results.push(r);
    say(`  ${r.name} x ${Math.round(r.hz).toLocaleString('en-US')} ops/sec ±${r.rme.toFixed(2)}% (${r.samples} runs sampled)  (${r.mean_ns.toFixed(1)} ns/op)`);
  } finally {
    await sys.stop();
  }
} finally {
  await micro.close();
}

if (values.json) {
  process.stdout.write(`${JSON.stringify({ machine: machineFacts(), benchmark: 'benchmark@2.1.4', max_time_s: MAX_TIME, results }, null, 2)}\n`);
} else {
  const m = machineFacts();
  say(`\n${m.cpus} CPUs ${m.cpu_model}, Node ${m.node} (V8 ${m.v8}); benchmark.js 2.1.4, ${MAX_TIME} s per benchmark (sink ${sink & 1})`);
}
