import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchMain } from '../../src/cli/bench.ts';
import type { Io } from '../../src/cli/args.ts';
import { DEFAULT_COSTS } from '../../bench/cost-model.ts';
import type { BenchDocument, BenchResult } from '../../bench/harness.ts';
import { lineChart } from '../../bench/svg.ts';

/**
 * A well-formedness check for the SVG we write (no XML parser ships with Node): every tag closes
 * in order, attributes are quoted and unique, text and attribute values hold no raw '<' and only
 * the five predefined entities or character references, and there is one root element.
 * Returns the elements in document order, with their attributes.
 */
function parseXml(text: string): { name: string; attrs: Record<string, string> }[] {
  const elements: { name: string; attrs: Record<string, string> }[] = [];
  const stack: string[] = [];
  const entity = /&(?:amp|lt|gt|quot|apos|#\d+|#x[0-9a-f]+);/gi;
  const checkText = (t: string, where: string): void => {
    if (t.replace(entity, '').includes('&')) throw new Error(`bare & in ${where}`);
    if (t.includes('<')) throw new Error(`raw < in ${where}`);
  };
  let i = 0;
  let roots = 0;
  while (i < text.length) {
    const lt = text.indexOf('<', i);
    if (lt < 0) {
      checkText(text.slice(i), 'trailing text');
      if (text.slice(i).trim() !== '') throw new Error('text after the root element');
      break;
    }
    const between = text.slice(i, lt);
    checkText(between, `text before offset ${lt}`);
    if (stack.length === 0 && between.trim() !== '') throw new Error(`text outside the root at ${i}`);
    const gt = text.indexOf('>', lt);
    if (gt < 0) throw new Error(`unterminated tag at ${lt}`);
    const tag = text.slice(lt + 1, gt);
    if (tag.startsWith('/')) {
      const name = tag.slice(1).trim();
      if (stack.pop() !== name) throw new Error(`</${name}> does not close the open element at ${lt}`);
    } else {
      const selfClosing = tag.endsWith('/');
      const body = selfClosing ? tag.slice(0, -1) : tag;
      const m = /^([A-Za-z][\w:.-]*)((?:\s+[A-Za-z_:][\w:.-]*="[^"]*")*)\s*$/.exec(body);
      if (m === null) throw new Error(`malformed tag <${tag}>`);
      const attrs: Record<string, string> = {};
      for (const a of m[2]!.matchAll(/([A-Za-z_:][\w:.-]*)="([^"]*)"/g)) {
        if (a[1]! in attrs) throw new Error(`duplicate attribute ${a[1]} in <${m[1]}>`);
        checkText(a[2]!, `attribute ${a[1]}`);
        attrs[a[1]!] = a[2]!;
      }
      if (stack.length === 0 && ++roots > 1) throw new Error('more than one root element');
      elements.push({ name: m[1]!, attrs });
      if (!selfClosing) stack.push(m[1]!);
    }
    i = gt + 1;
  }
  if (stack.length !== 0) throw new Error(`unclosed <${stack.join('>, <')}>`);
  if (elements[0]?.name !== 'svg') throw new Error('the root element is not <svg>');
  return elements;
}

function seriesNames(svg: string): string[] {
  return parseXml(svg).filter((e) => e.name === 'g' && e.attrs.class === 'series').map((e) => e.attrs['data-series']!.replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>'));
}

describe('SVG charts', () => {
  it('are well-formed XML with one group per series, names escaped', () => {
    const svg = lineChart({
      title: 'a <b> & "c"',
      xLabel: 'x',
      yLabel: 'y',
      xScale: 'log2',
      yScale: 'log10',
      series: [
        { name: 'p & q <1>', points: [[1, 10], [2, 100], [64, 1e6]] },
        { name: 'floor', points: [[1, 1e7]], dashed: true },
      ],
    });
    expect(seriesNames(svg)).toEqual(['p & q <1>', 'floor']);
    const els = parseXml(svg);
    expect(els.filter((e) => e.name === 'polyline')).toHaveLength(2);
    expect(els.filter((e) => e.name === 'circle')).toHaveLength(4);
    expect(els.find((e) => e.name === 'polyline' && e.attrs['stroke-dasharray'] === '6 4')).toBeDefined();
  });

  it('draw an empty chart as axes and "no data", still well-formed', () => {
    const svg = lineChart({ title: 't', xLabel: 'x', yLabel: 'y', xScale: 'linear', yScale: 'log10', series: [] });
    expect(parseXml(svg).map((e) => e.name)).toEqual(['svg', 'title', 'rect', 'text', 'rect', 'text', 'text', 'text']);
    expect(svg).toContain('>no data</text>');
  });

  it('the checker itself refuses what is not well-formed', () => {
    expect(() => parseXml('<svg><g></svg>')).toThrow('does not close');
    expect(() => parseXml('<svg><text>a & b</text></svg>')).toThrow('bare &');
    expect(() => parseXml('<svg a="1" a="2"/>')).toThrow('duplicate attribute');
    expect(() => parseXml('<svg/><svg/>')).toThrow('more than one root');
  });
});

// ---------------------------------------------------------------------------------------------
// One tiny run through the CLI: a few hundred samples, the documented JSON, the files of --out.
// ---------------------------------------------------------------------------------------------

const SAMPLES = 300;
const WARMUP = 50;
const ARGS = ['--paths', 'native,native-mp', '--producers', '1,2', '--workloads', 'tlbi-va,unmap,stream', '--batch', '1,8', '--sync', 'msi', '--quick', '--samples', String(SAMPLES), '--warmup', String(WARMUP), '--json'];

let dir = '';
let code = -1;
let stdout = '';
let stderr = '';
let doc: BenchDocument;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'smmu-bench-'));
  const outs: string[] = [];
  const errs: string[] = [];
  const io: Io = { out: (t) => void outs.push(t), err: (t) => void errs.push(t), stdin: () => (async function* () {})(), stdinIsTTY: false };
  code = await benchMain([...ARGS, '--out', dir], io);
  stdout = outs.join('');
  stderr = errs.join('');
  doc = JSON.parse(stdout) as BenchDocument;
}, 120_000);

afterAll(() => {
  if (dir !== '') rmSync(dir, { recursive: true, force: true });
});

const isNum = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v);
const LAT_KEYS = ['p50', 'p90', 'p99', 'p999', 'max', 'mean'];
const ran = (): BenchResult[] => doc.results.filter((r) => r.skipped === null);

describe('a tiny benchmark run', () => {
  it('exits 0 and prints one JSON document on stdout, and on stderr only the --out note', () => {
    expect(code).toBe(0);
    expect(stdout.trimEnd().split('\n')[0]).toBe('{');
    expect(stderr).toBe(`smmu-sim bench: wrote results.json, summary.md and 4 plots to ${dir}\n`);
    expect(Object.keys(doc)).toEqual(expect.arrayContaining(['machine', 'results']));
  });

  it('records the machine: CPU count and model, Node and V8 versions', () => {
    expect(isNum(doc.machine.cpus) && doc.machine.cpus >= 1).toBe(true);
    expect(typeof doc.machine.cpu_model).toBe('string');
    expect(doc.machine.node).toBe(process.version);
    expect(doc.machine.v8).toBe(process.versions.v8);
    for (const r of doc.results) expect(r.machine).toEqual({ cpus: doc.machine.cpus, cpu_model: doc.machine.cpu_model, node: process.version, v8: process.versions.v8 });
  });

  it('has one row per path × producers × workload × batch, the fixed keys first, in the documented order', () => {
    // native and native-mp; producers 1, 2; tlbi-va ×2 batches, unmap, stream ×2 batches.
    expect(doc.results).toHaveLength(2 * 2 * 5);
    const fixed = ['path', 'workload', 'policy', 'batch', 'producers', 'hops', 'latency_ns', 'throughput_cmds_per_s', 'floor', 'ratio_to_floor'];
    for (const r of doc.results) {
      expect(Object.keys(r).slice(0, fixed.length)).toEqual(fixed);
      expect(Object.keys(r.latency_ns)).toEqual(LAT_KEYS);
      expect(Object.keys(r.floor).slice(0, 2)).toEqual(['latency_ns', 'throughput_cmds_per_s']);
      expect(Object.keys(r.floor.latency_ns)).toEqual(LAT_KEYS);
      expect(typeof r.path).toBe('string');
      expect(typeof r.workload).toBe('string');
      expect(r.policy).toBe('hybrid');
      expect(Number.isInteger(r.batch) && Number.isInteger(r.producers)).toBe(true);
      expect([r.sync, r.queue_entries, r.queue_log2]).toEqual(['msi', 256, 8]);
      expect(r.policy_detail).toEqual({ mode: 'hybrid', spin: 20_000, timeout_ms: 1_000 });
    }
  });

  it('runs what each path can and skips the rest with the reason, every number null', () => {
    const shapes = ['tlbi-va 1', 'tlbi-va 8', 'unmap 1', 'stream 1', 'stream 8'];
    expect(ran().map((x) => `${x.path} ${x.workload} ${x.batch} ${x.producers}`)).toEqual([
      ...shapes.map((w) => `native ${w} 1`),
      ...shapes.map((w) => `native-mp ${w} 1`),
      ...shapes.map((w) => `native-mp ${w} 2`),
    ]);
    for (const s of doc.results.filter((x) => x.skipped !== null)) {
      expect(s.skipped).toMatch(/^native is the single-producer driver/);
      expect(s.error).toBeNull();
      expect(Object.values(s.latency_ns).every((v) => v === null)).toBe(true);
      expect([s.throughput_cmds_per_s, s.ratio_to_floor, s.floor.throughput_cmds_per_s, s.timer_overhead_ns, s.projected]).toEqual([null, null, null, null, null]);
      expect(s.samples).toBe(0);
    }
  });

  it('gives every run row numbers of the right types, monotone percentiles and the sample counts asked for', () => {
    for (const r of ran()) {
      expect(r.error).toBeNull();
      expect(r.hops).toBe(1);
      const l = r.latency_ns as Record<string, number>;
      for (const k of LAT_KEYS) expect(isNum(l[k]) && l[k]! > 0, `${r.workload} ${k}`).toBe(true);
      expect(l.p50! <= l.p90! && l.p90! <= l.p99! && l.p99! <= l.p999! && l.p999! <= l.max!).toBe(true);
      expect(l.mean!).toBeLessThanOrEqual(l.max!);
      expect(isNum(r.throughput_cmds_per_s) && r.throughput_cmds_per_s! > 0).toBe(true);
      expect(isNum(r.timer_overhead_ns!.p50) && isNum(r.timer_overhead_ns!.p99)).toBe(true);
      const stream = r.workload === 'stream';
      // Per producer; stream rows count doorbells: 16 entries per requested sample.
      expect(r.samples).toBe(r.producers * (stream ? Math.ceil((SAMPLES * 16) / r.batch) : SAMPLES));
      expect(r.warmup).toBe(r.producers * (stream ? Math.ceil((WARMUP * 16) / r.batch) : WARMUP));
    }
  });

  it('compares every run row with the floor measured in the same run, consistently with the numbers shown', () => {
    const floor = doc.floors.find((f) => f.policy === 'hybrid')!;
    expect(floor.error).toBeNull();
    expect(floor.rtt!.samples).toBe(SAMPLES);
    for (const x of floor.ring) expect(x.bad_entries).toBe(0);
    const perDoorbell: Record<string, number> = { 'tlbi-va 1': 2, 'tlbi-va 8': 9, 'unmap 1': 3, 'stream 1': 1, 'stream 8': 8 };
    for (const r of ran()) {
      expect(r.floor.latency_ns).toEqual(floor.rtt!.latency_ns);
      expect(r.floor.batch).toBe(perDoorbell[`${r.workload} ${r.batch}`]);
      expect(r.floor.throughput_cmds_per_s).toBe(floor.ring.find((x) => x.batch === r.floor.batch)!.throughput_cmds_per_s);
      const want = r.ratio_basis === 'latency_p50' ? r.latency_ns.p50! / r.floor.latency_ns.p50! : r.floor.throughput_cmds_per_s! / r.throughput_cmds_per_s!;
      expect(r.ratio_basis).toBe(r.workload === 'stream' ? 'throughput' : 'latency_p50');
      expect(Math.abs(r.ratio_to_floor! - want)).toBeLessThanOrEqual(5e-5 + want * 1e-9);
    }
  });

  it('saw the device consume exactly the commands the producers issued', () => {
    for (const r of ran()) {
      const ops = r.warmup + r.samples;
      // Each producer drains its stream with one CMD_SYNC.
      const drain = r.workload === 'stream' ? r.producers : 0;
      expect(r.expected_device_commands).toBe(ops * r.commands_per_op + drain);
      expect(r.device!.commands_consumed).toBe(r.expected_device_commands);
      expect(r.device!.cmd_syncs).toBe(ops * r.syncs_per_op + drain);
      expect(r.device!.command_errors).toBe(0);
      expect(r.counters!.command_errors).toBe(0);
      expect(r.counters!.syncs).toBe(ops * r.syncs_per_op + drain);
    }
  });

  it("counts the single-producer driver's doorbells exactly, and the multi-producer CPUs' own counters", () => {
    for (const r of ran().filter((x) => x.path === 'native')) {
      expect(r.counters!.doorbells).toBe(r.warmup + r.samples + (r.workload === 'stream' ? 1 : 0));
      expect(r.producer_queues).toEqual(['CMDQ']);
    }
    for (const r of ran().filter((x) => x.path === 'native-mp')) {
      expect(Object.keys(r.counters!).sort()).toEqual(['cmpxchg_retries', 'command_errors', 'doorbells', 'polls', 'queue_full', 'syncs', 'times_owner', 'waits']);
      // Every producer is on the one shared CMDQ; with the lock-free algorithm an owner rings the
      // doorbell for everything gathered, so there are at most as many doorbells as insertions.
      expect(r.producer_queues).toEqual(new Array(r.producers).fill('CMDQ (shared)'));
      const insertions = (r.warmup + r.samples) * r.doorbells_per_op + (r.workload === 'stream' ? r.producers : 0);
      expect(r.counters!.times_owner).toBeLessThanOrEqual(insertions);
      expect(r.counters!.times_owner).toBeGreaterThan(0);
      expect(r.counters!.doorbells).toBe(r.counters!.times_owner);
    }
  });

  it('projects with the default costs: events × ns, the raw p50 beside it', () => {
    expect(doc.cost_model).toEqual(DEFAULT_COSTS);
    const want: Record<string, number> = { 'tlbi-va 1': 820, 'tlbi-va 8': 960, 'unmap 1': 840, 'stream 1': 20, 'stream 8': 160 };
    for (const r of ran()) {
      expect(r.events_per_op).toEqual({ vm_exits: 0, user_exits: 0, ioctls: 0, hw_commands: r.commands_per_op - r.syncs_per_op, cmd_syncs: r.syncs_per_op });
      expect([r.events_source, r.vmm]).toEqual(['shape', null]);
      expect(r.projected!.ns_per_op).toBe(want[`${r.workload} ${r.batch}`]);
      expect(r.projected!.raw_p50_ns).toBe(r.latency_ns.p50);
    }
    expect(doc.calibration.every((c) => c.in_published_range)).toBe(true);
    // No trap or vcmdq rows in this run: nothing to compare from measured counts.
    expect(doc.calibration_measured).toEqual([]);
  });

  it('writes results.json (the same document), summary.md and the three plots to --out', () => {
    expect(readdirSync(dir).sort()).toEqual(['latency-cdf-native-mp.svg', 'latency-cdf-native.svg', 'results.json', 'summary.md', 'throughput-vs-batch.svg', 'throughput-vs-producers.svg']);
    expect(JSON.parse(readFileSync(join(dir, 'results.json'), 'utf8'))).toEqual(doc);
    const md = readFileSync(join(dir, 'summary.md'), 'utf8');
    expect(md).toContain(`Command: \`smmu-sim bench ${ARGS.join(' ')} --out ${dir}\``);
    expect(md).toContain('| path | workload | sync | batch | prod | hops | p50 | p90 | p99 | p99.9 | max | mean | cmds/s | floor p50 | floor cmds/s | ×floor | projected |');
    expect(md).toMatch(/^- skipped 5 rows \(native; producers 2\): native is the single-producer driver/m);
  });

  it('draws the latency CDF per path, throughput against producers and against batch, each series as expected', () => {
    const read = (f: string): string => readFileSync(join(dir, f), 'utf8');
    expect(seriesNames(read('latency-cdf-native.svg'))).toEqual(['tlbi-va msi', 'tlbi-va ×8 msi', 'unmap msi', 'floor round trip hybrid']);
    expect(seriesNames(read('latency-cdf-native-mp.svg'))).toEqual(['tlbi-va msi', 'tlbi-va ×8 msi', 'unmap msi', 'tlbi-va msi p2', 'tlbi-va ×8 msi p2', 'unmap msi p2', 'floor round trip hybrid']);
    expect(seriesNames(read('throughput-vs-producers.svg'))).toEqual(['native tlbi-va ×1 msi', 'native tlbi-va ×8 msi', 'native-mp tlbi-va ×1 msi', 'native-mp tlbi-va ×8 msi']);
    // native has one producer: one point; native-mp two.
    const byProducers = parseXml(read('throughput-vs-producers.svg')).filter((e) => e.name === 'polyline');
    expect(byProducers.map((p) => p.attrs.points!.split(' ').length)).toEqual([1, 1, 2, 2]);
    expect(seriesNames(read('throughput-vs-batch.svg'))).toEqual(['native tlbi-va msi', 'native stream msi', 'native-mp tlbi-va msi', 'native-mp stream msi', 'bare ring']);
    // Two batches per curve, and the bare ring at the same two batch sizes.
    const polylines = parseXml(read('throughput-vs-batch.svg')).filter((e) => e.name === 'polyline');
    expect(polylines.map((p) => p.attrs.points!.split(' ').length)).toEqual([2, 2, 2, 2, 2]);
  });
});
