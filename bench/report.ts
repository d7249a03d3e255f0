/**
 * Human-readable views of a benchmark document: the table `smmu-sim bench` prints and the
 * markdown summary `--out` writes. Both show raw numbers beside projected ones.
 */
import type { BenchDocument, BenchResult, FloorReport } from './harness.ts';
import { fmtNs, fmtRate } from './stats.ts';

const COLUMNS = ['path', 'workload', 'sync', 'batch', 'prod', 'hops', 'p50', 'p90', 'p99', 'p99.9', 'max', 'mean', 'cmds/s', 'floor p50', 'floor cmds/s', '×floor', 'projected'] as const;
/** Columns aligned right (numbers). */
const RIGHT = new Set<string>(['batch', 'prod', 'hops', 'p50', 'p90', 'p99', 'p99.9', 'max', 'mean', 'cmds/s', 'floor p50', 'floor cmds/s', '×floor', 'projected']);

function ratio(r: BenchResult): string {
  return r.ratio_to_floor === null ? '-' : `${r.ratio_to_floor.toFixed(2)}${r.ratio_basis === 'throughput' ? ' (rate)' : ''}`;
}

function cells(r: BenchResult): string[] {
  const l = r.latency_ns;
  return [
    r.path,
    r.workload,
    r.sync,
    String(r.batch),
    String(r.producers),
    r.hops === null ? '-' : String(r.hops),
    fmtNs(l.p50),
    fmtNs(l.p90),
    fmtNs(l.p99),
    fmtNs(l.p999),
    fmtNs(l.max),
    fmtNs(l.mean),
    fmtRate(r.throughput_cmds_per_s),
    fmtNs(r.floor.latency_ns.p50),
    fmtRate(r.floor.throughput_cmds_per_s),
    ratio(r),
    r.projected === null ? '-' : fmtNs(r.projected.ns_per_op),
  ];
}

function policyLine(policy: string, rows: readonly BenchResult[]): string {
  const d = rows[0]?.policy_detail;
  const how = d === undefined ? '' : d.mode === 'spin' ? 'spin only' : d.mode === 'wait' ? 'sleep at once' : `spin ${d.spin} polls, then sleep`;
  const queues = [...new Set(rows.map((r) => r.queue_entries))].join(', ');
  return `wait policy ${policy} (${how}); queue ${queues} entries`;
}

function floorLine(f: FloorReport | undefined): string {
  if (f === undefined) return 'floor: not measured';
  if (f.rtt === null) return `floor: failed: ${f.error}`;
  const l = f.rtt.latency_ns;
  const ring = [...f.ring].sort((a, b) => a.batch - b.batch).map((x) => `${x.batch}/doorbell ${fmtRate(x.throughput_cmds_per_s)}`).join(', ');
  return `floor: worker round trip p50 ${fmtNs(l.p50)}, p99 ${fmtNs(l.p99)}, p99.9 ${fmtNs(l.p999)} (${f.rtt.samples} samples); bare ring ${ring}`;
}

function table(header: readonly string[], rows: readonly string[][]): string[] {
  const width = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: readonly string[]): string =>
    r.map((c, i) => (RIGHT.has(header[i]!) ? c.padStart(width[i]!) : c.padEnd(width[i]!))).join('  ').trimEnd();
  return [line(header), ...rows.map(line)];
}

/** Skipped rows, one line per distinct reason, with the combinations it covers. */
function skippedLines(results: readonly BenchResult[]): string[] {
  const byReason = new Map<string, BenchResult[]>();
  for (const r of results) {
    if (r.skipped === null) continue;
    const g = byReason.get(r.skipped);
    if (g === undefined) byReason.set(r.skipped, [r]);
    else g.push(r);
  }
  return [...byReason].map(([reason, rs]) => {
    const paths = [...new Set(rs.map((r) => r.path))].join(', ');
    const prods = [...new Set(rs.map((r) => r.producers))].join(', ');
    return `skipped ${rs.length} row${rs.length === 1 ? '' : 's'} (${paths}; producers ${prods}): ${reason}`;
  });
}

function costLine(doc: BenchDocument): string {
  const c = doc.cost_model;
  return `cost model (${c.source}): exit ${c.exit} ns, uexit ${c.uexit} ns, ioctl ${c.ioctl} ns, cmd ${c.cmd} ns, sync ${c.sync} ns, hardware part ${c.hw === 'measured' ? "the path's measured p50" : 'from cmd and sync'}`;
}

/** The same check on the run's own trap and vcmdq rows, from their measured counts; undefined without such pairs. */
function measuredCalibrationLine(doc: BenchDocument): string | undefined {
  const rows = doc.calibration_measured;
  if (rows.length === 0) return undefined;
  const parts = rows.map((r) => {
    const name = `${r.policy} ${r.workload}${r.batch === 1 ? '' : ` ×${r.batch}`} ${r.vcmdq_sync}${r.trap_sync === r.vcmdq_sync ? '' : `/trap ${r.trap_sync}`}`;
    const raw = r.raw_reduction === null ? '' : ` (raw p50 ${(r.raw_reduction * 100).toFixed(1)}%)`;
    return `${name} ${fmtNs(r.trap_ns)} -> ${fmtNs(r.vcmdq_ns)}: ${(r.reduction * 100).toFixed(1)}% less${raw}`;
  });
  return `measured: vcmdq vs trap projected from this run's counts: ${parts.join('; ')}`;
}

function calibrationLine(doc: BenchDocument): string {
  const parts = doc.calibration.map((r) => `${r.workload} ${(r.reduction * 100).toFixed(1)}%`);
  return `calibration: direct VCMDQ vs trapped (reference event counts) projects ${parts.join(', ')} less time (published for Grace: 70-90%)`;
}

/**
 * Rows whose invalidation passes through more threads than the machine has CPUs (hops + 1: the
 * producer, and each worker it hands off to), under a policy that spins: one of the spinning
 * threads then always waits for a core, and the row measures the scheduler as much as the path.
 */
function oversubscribedLine(doc: BenchDocument): string | undefined {
  const cpus = doc.machine.cpus;
  const rows = doc.results.filter((r) => r.skipped === null && r.hops !== null && r.hops + 1 > cpus && r.policy_detail.mode !== 'wait');
  if (rows.length === 0) return undefined;
  const names = [...new Set(rows.map((r) => `${r.path}${r.workload === 'unmap' && r.path === 'vcmdq' ? ' (unmap)' : ''}`))].join(', ');
  const threads = Math.max(...rows.map((r) => r.hops! + 1));
  return `note: ${names}: up to ${threads} threads per invalidation on ${cpus} CPUs with a spinning wait policy, so a spinning thread holds the core another needs (docs/benchmarks.md, Caveats; --policy wait shows the hand-offs themselves)`;
}

/** The table `smmu-sim bench` prints on stdout. */
export function formatTable(doc: BenchDocument): string {
  const m = doc.machine;
  const out: string[] = [];
  out.push(`smmu-sim bench: ${m.cpus} CPUs ${m.cpu_model}, Node ${m.node} (V8 ${m.v8})${m.hypervisor ? ', virtual machine' : ''}${m.cpuidle_driver ? `, cpuidle ${m.cpuidle_driver}` : ''}; ${doc.duration_s} s`);
  const policies = [...new Set(doc.results.map((r) => r.policy))];
  for (const p of policies) {
    const rows = doc.results.filter((r) => r.policy === p);
    const ran = rows.filter((r) => r.skipped === null && r.error === null);
    out.push('');
    out.push(policyLine(p, rows));
    out.push(floorLine(doc.floors.find((f) => f.policy === p)));
    if (ran.length > 0) out.push(...table(COLUMNS, ran.map(cells)));
    for (const r of rows) if (r.error !== null) out.push(`error: ${r.path} ${r.workload} batch ${r.batch} producers ${r.producers} ${r.sync}: ${r.error}`);
  }
  out.push('');
  const over = oversubscribedLine(doc);
  if (over !== undefined) out.push(over);
  out.push(...skippedLines(doc.results));
  out.push('×floor: p50 / floor round-trip p50; "(rate)": bare-ring cmds/s / cmds/s at the same entries per doorbell.');
  out.push(costLine(doc));
  out.push(calibrationLine(doc));
  const measured = measuredCalibrationLine(doc);
  if (measured !== undefined) out.push(measured);
  return `${out.join('\n')}\n`;
}

function mdTable(header: readonly string[], rows: readonly string[][]): string[] {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [
    `| ${header.map(esc).join(' | ')} |`,
    `|${header.map((h) => (RIGHT.has(h) ? '---:' : '---')).join('|')}|`,
    ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ];
}

/** summary.md: the run as a document, with the plots `--out` wrote beside it. */
export function formatSummary(doc: BenchDocument, plots: readonly string[]): string {
  const m = doc.machine;
  const out: string[] = [];
  out.push('# smmu-sim benchmark');
  out.push('');
  out.push(`Command: \`${doc.command}\`, started ${doc.started_at}, ${doc.duration_s} s.`);
  out.push('');
  out.push(
    `Machine: ${m.cpus} CPUs, ${m.cpu_model}; Node ${m.node}, V8 ${m.v8}; ${m.platform}/${m.arch} ${m.os_release}; ` +
      `hypervisor ${m.hypervisor ?? 'unknown'}, cpuidle ${m.cpuidle_driver ?? 'unknown'}, clocksource ${m.clocksource ?? 'unknown'}; load ${m.loadavg_1m} at the start.`,
  );
  for (const p of [...new Set(doc.results.map((r) => r.policy))]) {
    const rows = doc.results.filter((r) => r.policy === p);
    const ran = rows.filter((r) => r.skipped === null && r.error === null);
    out.push('');
    out.push(`## Wait policy ${p}`);
    out.push('');
    out.push(`${policyLine(p, rows)}.`);
    out.push('');
    out.push(`${floorLine(doc.floors.find((f) => f.policy === p))}.`);
    out.push('');
    if (ran.length > 0) out.push(...mdTable(COLUMNS, ran.map(cells)));
    const errors = rows.filter((r) => r.error !== null);
    if (errors.length > 0) {
      out.push('');
      for (const r of errors) out.push(`- error: ${r.path} ${r.workload} batch ${r.batch} producers ${r.producers} ${r.sync}: ${r.error}`);
    }
  }
  const skipped = skippedLines(doc.results);
  if (skipped.length > 0) {
    out.push('');
    out.push('## Not run');
    out.push('');
    for (const s of skipped) out.push(`- ${s}`);
  }
  out.push('');
  out.push('## Cost model');
  out.push('');
  out.push(`${costLine(doc)}.`);
  out.push('');
  out.push(...mdTable(['workload', 'trap (reference)', 'vcmdq (reference)', 'reduction', 'in 70-90%'], doc.calibration.map((r) => [r.workload, fmtNs(r.trap_ns), fmtNs(r.vcmdq_ns), `${(r.reduction * 100).toFixed(1)}%`, r.in_published_range ? 'yes' : 'no'])));
  if (doc.calibration_measured.length > 0) {
    out.push('');
    out.push("From this run's counts (trap and vcmdq rows, each projected from the events its VMM and guest counted):");
    out.push('');
    out.push(...mdTable(
      ['policy', 'workload', 'batch', 'trap (projected)', 'vcmdq (projected)', 'reduction', 'in 70-90%', 'trap p50', 'vcmdq p50', 'raw reduction'],
      doc.calibration_measured.map((r) => [
        r.policy, r.workload, String(r.batch), fmtNs(r.trap_ns), fmtNs(r.vcmdq_ns), `${(r.reduction * 100).toFixed(1)}%`, r.in_published_range ? 'yes' : 'no',
        fmtNs(r.trap_raw_p50_ns), fmtNs(r.vcmdq_raw_p50_ns), r.raw_reduction === null ? '-' : `${(r.raw_reduction * 100).toFixed(1)}%`,
      ]),
    ));
  }
  if (plots.length > 0) {
    out.push('');
    out.push('## Plots');
    out.push('');
    for (const p of plots) out.push(`![${p}](${p})`);
  }
  out.push('');
  out.push('Raw numbers: results.json (`smmu-sim bench --json` prints the same document).');
  return `${out.join('\n')}\n`;
}
