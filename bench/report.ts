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
  return `cost model (${c.source}): exit ${c.exit} ns, ioctl ${c.ioctl} ns, cmd ${c.cmd} ns, sync ${c.sync} ns, hardware part ${c.hw === 'measured' ? "the path's measured p50" : 'from cmd and sync'}`;
}

function calibrationLine(doc: BenchDocument): string {
  const parts = doc.calibration.map((r) => `${r.workload} ${(r.reduction * 100).toFixed(1)}%`);
  return `calibration: direct VCMDQ vs trapped (reference event counts) projects ${parts.join(', ')} less time (published for Grace: 70-90%)`;
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
  out.push(...skippedLines(doc.results));
  out.push('×floor: p50 / floor round-trip p50; "(rate)": bare-ring cmds/s / cmds/s at the same entries per doorbell.');
  out.push(costLine(doc));
  out.push(calibrationLine(doc));
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
