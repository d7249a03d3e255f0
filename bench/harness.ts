/**
 * The benchmark harness (issue 7): for every wait policy, the floor of the medium, then every
 * path × producers × queue size × sync mode × workload × batch, each measured inside its bench
 * workers, each reported beside its floor and its cost-model projection.
 *
 * Order of a run, per wait policy:
 *   1. the floor (floor.ts) in two floor workers, while nothing else runs: a spinning device
 *      worker would share the two cores with them;
 *   2. per path: the path's session (e.g. a System whose device worker idles by the policy),
 *      per producer count one bench worker per producer, per (queue, sync) a guest configure,
 *      then one run per (workload, batch).
 * Rows that cannot run (a path not built, a feature missing, more producers than a path has)
 * are kept, marked `skipped` with the reason, every number null.
 */
import type { Worker } from 'node:worker_threads';
import { parseWaitPolicy, type WaitPolicy } from '../src/mem/wait.ts';
import type { SmmuFeatures } from '../src/spec/features.ts';
import { spawnWorker } from '../src/system/spawn.ts';
import {
  calibrationCheck, measuredCalibrationRow, project, type CalibrationRow, type CostCounts, type CostModel, type MeasuredCalibrationRow, type Projection,
} from './cost-model.ts';
import { floorBufferBytes, resetFloor } from './floor.ts';
import type { FloorRequest, FloorWorkerData } from './floor-worker.ts';
import { BARRIER, type SyncMode } from './guest-api.ts';
import type { GuestWorkerData, RunReply, RunRequest } from './guest-worker.ts';
import { machineBrief, machineFacts, type MachineBrief, type MachineFacts } from './machine.ts';
import { findPath, pathAvailability, type BenchPath, type PathSession } from './paths.ts';
import { cdfPoints, latencyOf, summarize, type LatencySummary } from './stats.ts';
import { WorkerLink, waitCount } from './workers.ts';
import { opShape, workloadByName, WORKLOADS, type OpShape, type Workload, type WorkloadName } from './workloads.ts';

export interface BenchOptions {
  /** Paths to run, by name (known names only; unavailable ones give skipped rows). */
  readonly paths: readonly string[];
  /** Wait policies as the CLI takes them: spin, hybrid, hybrid:N, wait. */
  readonly policies: readonly string[];
  readonly batches: readonly number[];
  readonly producers: readonly number[];
  readonly syncs: readonly SyncMode[];
  /** log2 of the command queue entries. */
  readonly queues: readonly number[];
  readonly workloads: readonly WorkloadName[];
  readonly quick: boolean;
  readonly features: SmmuFeatures;
  readonly cost: CostModel;
  /** Overrides of the per-row counts (tests use a few hundred samples). */
  readonly samples?: number;
  readonly warmup?: number;
  /** The command line, recorded in the document. */
  readonly command?: string;
  /** Called when a row starts: rows done so far, total rows, a label. */
  readonly progress?: (done: number, total: number, label: string) => void;
}

/** How many operations each measurement takes. */
export interface Counts {
  warmup: number;
  samples: number;
  maxMs: number;
  floorWarmup: number;
  floorSamples: number;
  floorMaxMs: number;
  ringEntries: number;
  ringMinMs: number;
  ringMaxMs: number;
  /** Ring runs per batch size; the median is published (one descheduling can halve a run). */
  ringRuns: number;
}

export const QUICK_COUNTS: Counts = Object.freeze({ warmup: 1_000, samples: 2_000, maxMs: 250, floorWarmup: 2_000, floorSamples: 10_000, floorMaxMs: 500, ringEntries: 200_000, ringMinMs: 20, ringMaxMs: 200, ringRuns: 3 });
export const FULL_COUNTS: Counts = Object.freeze({ warmup: 10_000, samples: 20_000, maxMs: 10_000, floorWarmup: 20_000, floorSamples: 100_000, floorMaxMs: 10_000, ringEntries: 2_000_000, ringMinMs: 200, ringMaxMs: 3_000, ringRuns: 5 });

/** Stream rows count doorbells, not invalidation round trips: this many entries per sample budget. */
const STREAM_ENTRIES_PER_SAMPLE = 16;

/** Time limit of a measurement whose count the user gave: an hour, i.e. none in practice. */
const NO_LIMIT_MS = 3_600_000;

/**
 * The counts of a run. Default counts stop early at a time limit per measurement (so that a
 * slow machine still finishes); counts given with --samples or --warmup are exact.
 */
export function countsFor(o: Pick<BenchOptions, 'quick' | 'samples' | 'warmup'>): Counts {
  const base = o.quick ? QUICK_COUNTS : FULL_COUNTS;
  const exact = o.samples !== undefined || o.warmup !== undefined;
  return {
    ...base,
    ...(o.samples !== undefined ? { samples: o.samples, floorSamples: o.samples, ringEntries: Math.max(1_000, o.samples * 64), ringMinMs: 0, ringRuns: 1 } : {}),
    ...(o.warmup !== undefined ? { warmup: o.warmup, floorWarmup: o.warmup } : {}),
    ...(exact ? { maxMs: NO_LIMIT_MS, floorMaxMs: NO_LIMIT_MS } : {}),
  };
}

type NullableLatency = { [K in keyof LatencySummary]: number | null };

export interface FloorRef {
  latency_ns: NullableLatency;
  throughput_cmds_per_s: number | null;
  /** Entries per doorbell of the bare ring this row is compared with. */
  batch: number | null;
  rtt_samples: number | null;
  ring_entries: number | null;
}

export interface BenchResult {
  path: string;
  workload: string;
  policy: string;
  batch: number;
  producers: number;
  hops: number | null;
  latency_ns: NullableLatency;
  throughput_cmds_per_s: number | null;
  floor: FloorRef;
  ratio_to_floor: number | null;
  /** latency_p50: latency_ns.p50 / floor.latency_ns.p50; throughput: floor rate / this rate. */
  ratio_basis: 'latency_p50' | 'throughput';
  /** Why the row did not run, or null. */
  skipped: string | null;
  /** What went wrong while it ran, or null. */
  error: string | null;
  sync: SyncMode;
  policy_detail: { mode: string; spin: number; timeout_ms: number };
  queue_log2: number;
  queue_entries: number;
  warmup: number;
  /** Timed operations (all producers). */
  samples: number;
  timer_overhead_ns: { p50: number; p99: number } | null;
  commands_per_op: number;
  syncs_per_op: number;
  doorbells_per_op: number;
  /** Operations per second (all producers). */
  ops_per_s: number | null;
  events_per_op: CostCounts | null;
  /**
   * Where events_per_op comes from: 'measured' (the path's serving side and producers counted
   * them over the row: the VM paths), 'shape' (the operation's shape: the host's paths, and
   * every row that did not run).
   */
  events_source: 'measured' | 'shape' | null;
  projected: (Projection & { raw_p50_ns: number | null }) | null;
  /** Guest counters summed over producers (warm-up and timed operations). */
  counters: Record<string, number> | null;
  /** The queue each producer issued to; '(shared)' marks a queue several producers share. */
  producer_queues: string[] | null;
  /** Device counters across the row (warm-up and timed operations), where the path has them. */
  device: Record<string, number> | null;
  /**
   * Commands the device should have consumed for the operations issued (CMD_SYNCs included): from
   * the shape, or on the VM paths from what the VMM and the guest's VCMDQ counted.
   */
  expected_device_commands: number | null;
  /** The path's serving side across the row (a VM's VMM or in-kernel queue), where it has one. */
  vmm: Record<string, number> | null;
  machine: MachineBrief;
}

export interface FloorReport {
  policy: string;
  rtt: { latency_ns: LatencySummary; samples: number; timer_overhead_ns: { p50: number; p99: number } } | null;
  ring: {
    queue_log2: number;
    batch: number;
    /** The median of `runs`. */
    throughput_cmds_per_s: number;
    /** Every run's cmds/s. */
    runs: number[];
    entries: number;
    doorbells: number;
    bad_entries: number;
  }[];
  error: string | null;
}

export interface BenchDocument {
  schema: 'smmu-sim-bench/1';
  command: string;
  started_at: string;
  duration_s: number;
  machine: MachineFacts;
  options: Record<string, unknown>;
  cost_model: CostModel;
  /** The default calibration's trap-versus-VCMDQ check under this cost model (reference counts). */
  calibration: CalibrationRow[];
  /** The same check on this run's rows: 'trap' against 'vcmdq', each projected from its measured counts. */
  calibration_measured: MeasuredCalibrationRow[];
  floors: FloorReport[];
  results: BenchResult[];
}

export interface BenchRun {
  doc: BenchDocument;
  /** Latency CDF points per result index (rows that ran). */
  cdf: Map<number, [number, number][]>;
  /** Floor round-trip CDF per policy. */
  floorCdf: Map<string, [number, number][]>;
}

interface PlannedRow {
  index: number;
  policyText: string;
  policy: WaitPolicy;
  pathName: string;
  path: BenchPath | undefined;
  producers: number;
  queueLog2: number;
  sync: SyncMode;
  workload: Workload;
  batch: number;
  shape: OpShape;
  skip: string | undefined;
}

const NULL_LATENCY: NullableLatency = { p50: null, p90: null, p99: null, p999: null, max: null, mean: null };

/** Every row of the run, in output order, with the reason it cannot run where it cannot. */
export function planRows(o: BenchOptions): PlannedRow[] {
  const rows: PlannedRow[] = [];
  for (const policyText of o.policies) {
    const policy = parseWaitPolicy(policyText);
    for (const pathName of o.paths) {
      const path = findPath(pathName);
      const avail = pathAvailability(pathName);
      if (avail === undefined) throw new Error(`unknown path '${pathName}'`);
      for (const producers of o.producers) {
        for (const queueLog2 of o.queues) {
          for (const sync of o.syncs) {
            for (const wname of o.workloads) {
              const workload = workloadByName(wname);
              if (workload === undefined) throw new Error(`unknown workload '${wname}'`);
              for (const batch of workload.batched ? o.batches : [1]) {
                const shape = opShape(workload.issues(batch));
                let skip = avail.ok ? undefined : avail.reason;
                skip ??= workload.unsupported(o.features);
                skip ??= path?.unsupported({ workload, batch, producers, sync, queueLog2, features: o.features });
                rows.push({ index: rows.length, policyText, policy, pathName, path, producers, queueLog2, sync, workload, batch, shape, skip });
              }
            }
          }
        }
      }
    }
  }
  return rows;
}

function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** The ratio of a row to its floor, from the published (rounded) numbers. */
export function ratioToFloor(basis: 'latency_p50' | 'throughput', latencyP50: number | null, floorP50: number | null, rate: number | null, floorRate: number | null): number | null {
  if (basis === 'latency_p50') {
    return latencyP50 !== null && floorP50 !== null && floorP50 > 0 ? round(latencyP50 / floorP50, 4) : null;
  }
  return rate !== null && floorRate !== null && rate > 0 ? round(floorRate / rate, 4) : null;
}

function blankResult(r: PlannedRow, machine: MachineBrief, skipped: string | null, error: string | null): BenchResult {
  return {
    path: r.pathName,
    workload: r.workload.name,
    policy: r.policyText,
    batch: r.batch,
    producers: r.producers,
    hops: r.path === undefined ? null : (r.path.hopsFor?.(r.workload.name) ?? r.path.hops),
    latency_ns: { ...NULL_LATENCY },
    throughput_cmds_per_s: null,
    floor: { latency_ns: { ...NULL_LATENCY }, throughput_cmds_per_s: null, batch: null, rtt_samples: null, ring_entries: null },
    ratio_to_floor: null,
    ratio_basis: r.workload.basis,
    skipped,
    error,
    sync: r.sync,
    policy_detail: { mode: r.policy.mode, spin: r.policy.spin, timeout_ms: r.policy.timeoutMs },
    queue_log2: r.queueLog2,
    queue_entries: 2 ** r.queueLog2,
    warmup: 0,
    samples: 0,
    timer_overhead_ns: null,
    commands_per_op: r.shape.commands,
    syncs_per_op: r.shape.syncs,
    doorbells_per_op: r.shape.doorbells,
    ops_per_s: null,
    events_per_op: r.path !== undefined ? r.path.events(r.shape, r.workload.name) : null,
    events_source: r.path !== undefined ? 'shape' : null,
    projected: null,
    counters: null,
    producer_queues: null,
    device: null,
    expected_device_commands: null,
    vmm: null,
    machine,
  };
}

// ---------------------------------------------------------------------------------------------
// The floor
// ---------------------------------------------------------------------------------------------

class FloorPair {
  private constructor(readonly a: WorkerLink, readonly b: WorkerLink, readonly i32: Int32Array) {}

  static async start(maxLog2: number): Promise<FloorPair> {
    const sab = new SharedArrayBuffer(floorBufferBytes(maxLog2));
    const data: FloorWorkerData = { sab };
    const a = new WorkerLink(spawnWorker(import.meta.url, './floor-worker', { workerData: data }), 'floor worker A');
    const b = new WorkerLink(spawnWorker(import.meta.url, './floor-worker', { workerData: data }), 'floor worker B');
    return new FloorPair(a, b, new Int32Array(sab));
  }

  async both<TA, TB>(ma: FloorRequest, mb: FloorRequest, timeoutMs: number): Promise<[TA, TB]> {
    resetFloor(this.i32);
    const pb = this.b.call<TB>(mb, timeoutMs);
    const pa = this.a.call<TA>(ma, timeoutMs);
    return Promise.all([pa, pb]);
  }

  async close(): Promise<void> {
    await Promise.all([this.a.close(), this.b.close()]);
  }
}

async function measureFloor(pair: FloorPair, policyText: string, policy: WaitPolicy, c: Counts, rings: readonly [number, number][]): Promise<{ report: FloorReport; cdf: [number, number][] }> {
  const timeout = (ms: number): number => ms + 30_000;
  type RttReply = { samples: Float64Array; count: number; timer: { p50: number; p99: number } };
  const [rtt] = await pair.both<RttReply, unknown>(
    { type: 'rtt', side: 'a', policy, warmup: c.floorWarmup, samples: c.floorSamples, maxMs: c.floorMaxMs },
    { type: 'rtt', side: 'b', policy, warmup: 0, samples: 0, maxMs: 0 },
    timeout(c.floorMaxMs),
  );
  const st = summarize(rtt.samples, rtt.count);
  const cdf = cdfPoints(rtt.samples.subarray(0, rtt.count), rtt.count);
  const ring: FloorReport['ring'] = [];
  // One untimed pass at the smallest and the largest batch first, so that no timed ring runs
  // before the JIT has compiled both sides' loops.
  const sizes = rings.map(([, b]) => b);
  for (const b of new Set([Math.min(...sizes), Math.max(...sizes)])) {
    const log2 = rings[0]![0];
    await pair.both(
      { type: 'ring', side: 'a', policy, log2, batch: b, entries: Math.max(b * 16, c.ringEntries / 4), minMs: 0, maxMs: c.ringMaxMs / 4 },
      { type: 'ring', side: 'b', policy, log2, batch: 0, entries: 0, minMs: 0, maxMs: 0 },
      timeout(c.ringMaxMs),
    );
  }
  for (const [log2, batch] of rings) {
    type RingReply = { run: { entries: number; doorbells: number; elapsedNs: number } };
    type ConsReply = { consumed: { entries: number; bad: number } };
    const entries = Math.max(batch * 16, c.ringEntries);
    const runs: { rate: number; entries: number; doorbells: number }[] = [];
    let bad = 0;
    for (let k = 0; k < c.ringRuns; k++) {
      const [p, q] = await pair.both<RingReply, ConsReply>(
        { type: 'ring', side: 'a', policy, log2, batch, entries, minMs: c.ringMinMs, maxMs: c.ringMaxMs },
        { type: 'ring', side: 'b', policy, log2, batch: 0, entries: 0, minMs: 0, maxMs: 0 },
        timeout(c.ringMaxMs),
      );
      runs.push({ rate: Math.round((p.run.entries / p.run.elapsedNs) * 1e9), entries: p.run.entries, doorbells: p.run.doorbells });
      bad += q.consumed.bad;
    }
    const median = [...runs].sort((x, y) => x.rate - y.rate)[(runs.length - 1) >> 1]!;
    ring.push({
      queue_log2: log2,
      batch,
      throughput_cmds_per_s: median.rate,
      runs: runs.map((x) => x.rate),
      entries: median.entries,
      doorbells: median.doorbells,
      bad_entries: bad,
    });
  }
  return { report: { policy: policyText, rtt: { latency_ns: latencyOf(st), samples: st.count, timer_overhead_ns: rtt.timer }, ring, error: null }, cdf };
}

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

interface Producers {
  links: WorkerLink[];
  barrier: Int32Array;
}

async function startProducers(session: PathSession, policy: WaitPolicy, n: number): Promise<Producers> {
  const barrierSab = new SharedArrayBuffer(BARRIER.WORDS * 4);
  const links: WorkerLink[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const data: GuestWorkerData = { module: session.guestModule, data: session.guestData(i, n), policy, producer: i, producers: n, barrier: barrierSab };
      const w: Worker = spawnWorker(import.meta.url, './guest-worker', { workerData: data });
      links.push(new WorkerLink(w, n === 1 ? 'bench worker' : `bench worker ${i}`));
    }
    for (const l of links) {
      const r = await l.next<{ ok: boolean; error?: string }>(30_000);
      if (!r.ok) throw new Error(r.error);
    }
  } catch (e) {
    await Promise.all(links.map((l) => l.close()));
    throw e;
  }
  return { links, barrier: new Int32Array(barrierSab) };
}

function sumCounters(all: readonly Record<string, number>[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const c of all) for (const [k, v] of Object.entries(c)) out[k] = (out[k] ?? 0) + v;
  return out;
}

function diffCounters(after: Record<string, number> | undefined, before: Record<string, number> | undefined): Record<string, number> | null {
  if (after === undefined || before === undefined) return null;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) out[k] = (v - (before[k] ?? 0)) >>> 0;
  return out;
}

async function runRow(
  r: PlannedRow,
  session: PathSession,
  prod: Producers,
  c: Counts,
  cost: CostModel,
  floor: { report: FloorReport } | undefined,
  machine: MachineBrief,
): Promise<{ result: BenchResult; cdf: [number, number][] }> {
  const samples = r.workload.name === 'stream' ? Math.max(64, Math.ceil((c.samples * STREAM_ENTRIES_PER_SAMPLE) / r.batch)) : c.samples;
  const warmup = r.workload.name === 'stream' ? Math.ceil((c.warmup * STREAM_ENTRIES_PER_SAMPLE) / r.batch) : c.warmup;
  const issues = r.workload.issues(r.batch);
  const req: RunRequest = { type: 'run', issues: r.path?.adaptIssues?.(issues) ?? issues, drain: r.workload.drain, warmup, samples, maxMs: c.maxMs };
  Atomics.store(prod.barrier, BARRIER.READY, 0);
  Atomics.store(prod.barrier, BARRIER.GO, 0);
  const svcBefore = await session.serviceCounters?.();
  const devBefore = session.deviceCounters?.();
  let failed: Error | undefined;
  const replies = Promise.all(
    prod.links.map((l) =>
      l.call<RunReply>(req, c.maxMs + 60_000).catch((e: Error) => {
        failed ??= e;
        throw e;
      }),
    ),
  );
  replies.catch(() => undefined);
  await waitCount(prod.barrier, BARRIER.READY, prod.links.length, c.maxMs + 60_000, () => failed);
  Atomics.store(prod.barrier, BARRIER.GO, 1);
  Atomics.notify(prod.barrier, BARRIER.GO);
  const rs = await replies;
  const devAfter = session.deviceCounters?.();
  const svcAfter = await session.serviceCounters?.();

  // Every producer's samples together: the distribution an invalidation sees on this path.
  const total = rs.reduce((s, x) => s + x.count, 0);
  const all = new Float64Array(total);
  let at = 0;
  for (const x of rs) {
    all.set(x.samples.subarray(0, x.count), at);
    at += x.count;
  }
  const st = summarize(all);
  const cdf = cdfPoints(all, total);
  let start = rs[0]!.startNs;
  let end = rs[0]!.endNs;
  for (const x of rs) {
    if (x.startNs < start) start = x.startNs;
    if (x.endNs > end) end = x.endNs;
  }
  const elapsed = Number(end - start);
  const drainCmds = r.workload.drain ? rs.length : 0;
  const rate = Math.round(((total * r.shape.commands + drainCmds) / elapsed) * 1e9);
  const counters = sumCounters(rs.map((x) => x.counters));
  const timer = { p50: Math.max(...rs.map((x) => x.timer.p50)), p99: Math.max(...rs.map((x) => x.timer.p99)) };

  const res = blankResult(r, machine, null, null);
  res.latency_ns = latencyOf(st);
  res.throughput_cmds_per_s = rate;
  res.ops_per_s = Math.round((total / elapsed) * 1e9);
  const warmedUp = rs.reduce((n, x) => n + x.warmedUp, 0);
  res.warmup = warmedUp;
  res.samples = total;
  res.timer_overhead_ns = timer;
  res.counters = counters;
  res.producer_queues = rs.map((x) => x.queue ?? '?');
  res.device = diffCounters(devAfter, devBefore);
  res.expected_device_commands = res.device === null ? null : (warmedUp + total) * r.shape.commands + drainCmds;
  if (svcBefore !== undefined && svcAfter !== undefined) {
    const vmm: Record<string, number> = {};
    for (const [k, v] of Object.entries(svcAfter)) vmm[k] = v - (svcBefore[k] ?? 0);
    res.vmm = vmm;
    const m = r.path?.measuredEvents?.({ ops: warmedUp + total, service: vmm, guest: counters });
    if (m !== undefined) {
      res.events_per_op = m.events;
      res.events_source = 'measured';
      if (res.device !== null) res.expected_device_commands = m.deviceCommands;
    }
    if ((vmm.physical_errors ?? 0) !== 0 || (vmm.errors ?? 0) !== 0 || (vmm.refused ?? 0) !== 0) {
      res.error = `the VMM reported ${vmm.refused ?? 0} refused command(s), ${vmm.errors ?? 0} failed call(s) and ${vmm.physical_errors ?? 0} physical command error(s) during the run`;
    }
  }
  if (counters.command_errors !== undefined && counters.command_errors !== 0) {
    res.error = `${counters.command_errors} command error(s) during the run: the workload's commands are not legal on this SMMU`;
  }
  if (floor?.report.rtt) {
    const ring = floor.report.ring.find((x) => x.queue_log2 === r.queueLog2 && x.batch === r.shape.perDoorbell);
    res.floor = {
      latency_ns: { ...floor.report.rtt.latency_ns },
      throughput_cmds_per_s: ring?.throughput_cmds_per_s ?? null,
      batch: r.shape.perDoorbell,
      rtt_samples: floor.report.rtt.samples,
      ring_entries: ring?.entries ?? null,
    };
  }
  res.ratio_to_floor = ratioToFloor(r.workload.basis, res.latency_ns.p50, res.floor.latency_ns.p50, res.throughput_cmds_per_s, res.floor.throughput_cmds_per_s);
  if (res.events_per_op !== null) res.projected = { ...project(res.events_per_op, cost, st.p50), raw_p50_ns: st.p50 };
  return { result: res, cdf };
}

// ---------------------------------------------------------------------------------------------
// The run
// ---------------------------------------------------------------------------------------------

function groupBy<T, K>(xs: readonly T[], key: (x: T) => K): Map<K, T[]> {
  const m = new Map<K, T[]>();
  for (const x of xs) {
    const k = key(x);
    const g = m.get(k);
    if (g === undefined) m.set(k, [x]);
    else g.push(x);
  }
  return m;
}

/**
 * 'trap' against 'vcmdq' on this run's latency rows of the same policy, workload, batch,
 * producers and queue, each projected from its measured events: the trap row of the same sync
 * mode where there is one, else the 'msi' one (a VCMDQ row is always CONS-polled).
 */
export function measuredCalibration(results: readonly BenchResult[], cost: CostModel): MeasuredCalibrationRow[] {
  const ok = (r: BenchResult): boolean => r.skipped === null && r.error === null && r.events_source === 'measured' && r.ratio_basis === 'latency_p50';
  const out: MeasuredCalibrationRow[] = [];
  for (const v of results.filter((r) => r.path === 'vcmdq' && ok(r))) {
    const same = results.filter((t) => t.path === 'trap' && ok(t) && t.policy === v.policy && t.workload === v.workload && t.batch === v.batch && t.producers === v.producers && t.queue_log2 === v.queue_log2);
    const t = same.find((x) => x.sync === v.sync) ?? same.find((x) => x.sync === 'msi') ?? same[0];
    if (t === undefined) continue;
    out.push(measuredCalibrationRow(
      { policy: v.policy, workload: v.workload, batch: v.batch, queue_log2: v.queue_log2 },
      { sync: t.sync, events: t.events_per_op!, p50: t.latency_ns.p50 },
      { sync: v.sync, events: v.events_per_op!, p50: v.latency_ns.p50 },
      cost,
    ));
  }
  return out;
}

export async function runBench(o: BenchOptions): Promise<BenchRun> {
  const t0 = performance.now();
  const started = new Date().toISOString();
  const machine = machineFacts();
  const brief = machineBrief(machine);
  const c = countsFor(o);
  const rows = planRows(o);
  const results: (BenchResult | undefined)[] = rows.map(() => undefined);
  const cdf = new Map<number, [number, number][]>();
  const floorCdf = new Map<string, [number, number][]>();
  const floors: FloorReport[] = [];
  let done = 0;
  const tick = (label: string): void => o.progress?.(done, rows.length, label);

  for (const r of rows) if (r.skip !== undefined) results[r.index] = blankResult(r, brief, r.skip, null);

  const runnable = rows.filter((r) => r.skip === undefined);
  done = rows.length - runnable.length;
  let pair: FloorPair | undefined;
  try {
    for (const [policyText, prow] of groupBy(runnable, (r) => r.policyText)) {
      const policy = prow[0]!.policy;
      // 1. The floor, alone on the machine.
      tick(`floor (${policyText})`);
      const rings = [...new Map(prow.map((r) => [`${r.queueLog2}/${r.shape.perDoorbell}`, [r.queueLog2, r.shape.perDoorbell] as [number, number]])).values()];
      let floor: { report: FloorReport; cdf: [number, number][] } | undefined;
      try {
        pair ??= await FloorPair.start(Math.max(...o.queues));
        floor = await measureFloor(pair, policyText, policy, c, rings);
        floors.push(floor.report);
        floorCdf.set(policyText, floor.cdf);
      } catch (e) {
        floors.push({ policy: policyText, rtt: null, ring: [], error: (e as Error).message });
      }

      // 2. The paths.
      for (const [, pathRows] of groupBy(prow, (r) => r.pathName)) {
        const path = pathRows[0]!.path!;
        let session: PathSession | undefined;
        try {
          session = await path.start({ policy, features: o.features });
          for (const [producers, prodRows] of groupBy(pathRows, (r) => r.producers)) {
            const prod = await startProducers(session, policy, producers);
            try {
              for (const [, cfgRows] of groupBy(prodRows, (r) => `${r.queueLog2}/${r.sync}`)) {
                const cfg = { sync: cfgRows[0]!.sync, queueLog2: cfgRows[0]!.queueLog2 };
                try {
                  const prepared = await session.configure?.(cfg, producers);
                  await Promise.all(prod.links.map((l) => l.call({ type: 'configure', cfg, prepared }, 60_000)));
                } catch (e) {
                  // This group cannot run; the next settings may.
                  for (const r of cfgRows) {
                    results[r.index] = blankResult(r, brief, null, (e as Error).message);
                    done++;
                  }
                  continue;
                }
                for (const r of cfgRows) {
                  tick(`${r.pathName} ${r.workload.name} b${r.batch} p${r.producers} ${r.sync} q${2 ** r.queueLog2} ${r.policyText}`);
                  try {
                    const out = await runRow(r, session, prod, c, o.cost, floor, brief);
                    results[r.index] = out.result;
                    cdf.set(r.index, out.cdf);
                  } catch (e) {
                    results[r.index] = blankResult(r, brief, null, (e as Error).message);
                  }
                  done++;
                }
              }
            } finally {
              await Promise.all(prod.links.map((l) => l.close()));
            }
          }
        } catch (e) {
          for (const r of pathRows) {
            if (results[r.index] === undefined) {
              results[r.index] = blankResult(r, brief, null, (e as Error).message);
              done++;
            }
          }
        } finally {
          await session?.stop();
        }
      }
    }
  } finally {
    await pair?.close();
  }
  tick('done');

  const shapes = WORKLOADS.filter((w) => !w.batched || w.name === 'tlbi-va')
    .filter((w) => w.basis === 'latency_p50')
    .map((w) => ({ name: w.name, shape: opShape(w.issues(1)) }));
  const finished = results.map((r, i) => r ?? blankResult(rows[i]!, brief, null, 'the row did not run'));
  const doc: BenchDocument = {
    schema: 'smmu-sim-bench/1',
    command: o.command ?? 'smmu-sim bench',
    started_at: started,
    duration_s: round((performance.now() - t0) / 1000, 2),
    machine,
    options: {
      paths: o.paths,
      policies: o.policies,
      batches: o.batches,
      producers: o.producers,
      syncs: o.syncs,
      queue_log2: o.queues,
      workloads: o.workloads,
      quick: o.quick,
      counts: c,
    },
    cost_model: o.cost,
    calibration: calibrationCheck(shapes, o.cost),
    calibration_measured: measuredCalibration(finished, o.cost),
    floors,
    results: finished,
  };
  return { doc, cdf, floorCdf };
}
