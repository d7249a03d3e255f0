/**
 * Hand-written SVG line charts (no packages; node-platform.md §5 (a)): latency CDFs and
 * throughput curves. Every series is a `<g class="series" data-series="…">` holding a polyline
 * and its point markers, so the files are easy to check and to restyle.
 */
import type { BenchRun } from './harness.ts';
import { fmtNs, fmtRate } from './stats.ts';

/** Tick labels: 1 µs rather than 1.00 µs. */
function tick(fmt: (v: number) => string): (v: number) => string {
  return (v) => fmt(v).replace(/\.0+(?= )/, '');
}

export type Scale = 'linear' | 'log10' | 'log2';

export interface Series {
  readonly name: string;
  readonly points: readonly (readonly [number, number])[];
  readonly dashed?: boolean;
}

export interface ChartSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly xScale: Scale;
  readonly yScale: Scale;
  readonly series: readonly Series[];
  readonly xFormat?: (v: number) => string;
  readonly yFormat?: (v: number) => string;
  /** Only whole-number ticks on the x axis (producers). */
  readonly xIntegers?: boolean;
  /** Fixed y range (e.g. 0..1 for a CDF). */
  readonly yRange?: readonly [number, number];
}

/** Plot area and margins (px); the legend to the right grows with its longest name and count. */
const PLOT_W = 520;
const PLOT_H = 388;
const M = { left: 90, top: 48, bottom: 64 };
const LEGEND_ROW = 18;
/** Width of one legend character at font-size 12 (sans-serif, generous). */
const CHAR_W = 7;
const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
/** Series drawn with markers only up to this many points (a CDF has ~100). */
const MARKER_LIMIT = 40;

/** Text and attribute values, escaped for XML. */
export function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&apos;');
}

function fwd(scale: Scale, v: number): number {
  return scale === 'log10' ? Math.log10(v) : scale === 'log2' ? Math.log2(v) : v;
}

function usable(scale: Scale, v: number): boolean {
  return Number.isFinite(v) && (scale === 'linear' || v > 0);
}

function ticks(scale: Scale, lo: number, hi: number): number[] {
  if (scale === 'log10') {
    const out: number[] = [];
    for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++) out.push(10 ** e);
    return out;
  }
  if (scale === 'log2') {
    const out: number[] = [];
    for (let e = Math.floor(Math.log2(lo)); e <= Math.ceil(Math.log2(hi)); e++) out.push(2 ** e);
    return out;
  }
  const span = hi - lo || 1;
  const raw = span / 6;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((k) => k * mag).find((s) => s >= raw) ?? raw;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

function f(n: number): string {
  return n.toFixed(1);
}

/** One chart as a standalone SVG document. */
export function lineChart(spec: ChartSpec): string {
  const longest = Math.max(0, ...spec.series.map((s) => s.name.length));
  const W = M.left + PLOT_W + 14 + 28 + Math.max(160, longest * CHAR_W) + 10;
  const H = Math.max(M.top + PLOT_H + M.bottom, M.top + 8 + spec.series.length * LEGEND_ROW + 16);
  const pw = PLOT_W;
  const ph = H - M.top - M.bottom;
  const pts = spec.series.flatMap((s) => s.points.filter(([x, y]) => usable(spec.xScale, x) && usable(spec.yScale, y)));
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  out.push(`<title>${xmlEscape(spec.title)}</title>`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="24" text-anchor="middle" font-size="15">${xmlEscape(spec.title)}</text>`);
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#333333"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${H - 16}" text-anchor="middle">${xmlEscape(spec.xLabel)}</text>`);
  out.push(`<text x="20" y="${M.top + ph / 2}" text-anchor="middle" transform="rotate(-90 20 ${M.top + ph / 2})">${xmlEscape(spec.yLabel)}</text>`);
  if (pts.length === 0) {
    out.push(`<text x="${M.left + pw / 2}" y="${M.top + ph / 2}" text-anchor="middle" fill="#888888">no data</text>`);
    out.push('</svg>');
    return `${out.join('\n')}\n`;
  }
  let [x0, x1] = [Math.min(...pts.map((p) => p[0])), Math.max(...pts.map((p) => p[0]))];
  let [y0, y1] = spec.yRange ?? [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))];
  // Pad a degenerate range so a single point still has axes around it.
  if (x1 <= x0) [x0, x1] = spec.xScale === 'linear' ? [x0 - 1, x1 + 1] : [x0 / 2, x1 * 2];
  if (y1 <= y0) [y0, y1] = spec.yScale === 'linear' ? [y0 - 1, y1 + 1] : [y0 / 2, y1 * 2];
  if (spec.yScale !== 'linear' && spec.yRange === undefined) [y0, y1] = [y0 / 1.5, y1 * 1.5];
  const fx0 = fwd(spec.xScale, x0);
  const fx1 = fwd(spec.xScale, x1);
  const fy0 = fwd(spec.yScale, y0);
  const fy1 = fwd(spec.yScale, y1);
  const X = (v: number): number => M.left + ((fwd(spec.xScale, v) - fx0) / (fx1 - fx0)) * pw;
  const Y = (v: number): number => M.top + ph - ((fwd(spec.yScale, v) - fy0) / (fy1 - fy0)) * ph;
  const xf = spec.xFormat ?? String;
  const yf = spec.yFormat ?? String;

  out.push('<g class="axes" stroke="#dddddd">');
  for (const t of ticks(spec.xScale, x0, x1).filter((t) => t >= x0 * (1 - 1e-9) && t <= x1 * (1 + 1e-9) && (!spec.xIntegers || Number.isInteger(t)))) {
    out.push(`<line x1="${f(X(t))}" y1="${M.top}" x2="${f(X(t))}" y2="${M.top + ph}"/>`);
    out.push(`<text x="${f(X(t))}" y="${M.top + ph + 18}" text-anchor="middle" stroke="none" fill="#333333">${xmlEscape(xf(t))}</text>`);
  }
  for (const t of ticks(spec.yScale, y0, y1).filter((t) => t >= y0 * (1 - 1e-9) && t <= y1 * (1 + 1e-9))) {
    out.push(`<line x1="${M.left}" y1="${f(Y(t))}" x2="${M.left + pw}" y2="${f(Y(t))}"/>`);
    out.push(`<text x="${M.left - 6}" y="${f(Y(t) + 4)}" text-anchor="end" stroke="none" fill="#333333">${xmlEscape(yf(t))}</text>`);
  }
  out.push('</g>');

  spec.series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length]!;
    // Past the palette, the same colours come back dotted.
    const dash = s.dashed ? '6 4' : i >= PALETTE.length ? '2 3' : undefined;
    const sp = s.points.filter(([x, y]) => usable(spec.xScale, x) && usable(spec.yScale, y));
    out.push(`<g class="series" data-series="${xmlEscape(s.name)}">`);
    out.push(`<title>${xmlEscape(s.name)}</title>`);
    if (sp.length > 0) {
      const poly = sp.map(([x, y]) => `${f(X(x))},${f(Y(y))}`).join(' ');
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''} points="${poly}"/>`);
      if (sp.length <= MARKER_LIMIT) for (const [x, y] of sp) out.push(`<circle cx="${f(X(x))}" cy="${f(Y(y))}" r="3" fill="${color}"/>`);
    }
    const ly = M.top + 8 + i * LEGEND_ROW;
    const lx = M.left + pw + 14;
    out.push(`<line x1="${lx}" y1="${ly}" x2="${lx + 22}" y2="${ly}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ''}/>`);
    out.push(`<text x="${lx + 28}" y="${ly + 4}">${xmlEscape(s.name)}</text>`);
    out.push('</g>');
  });
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

/** A file name for a path name (path names are lower-case words and dashes already). */
function safe(name: string): string {
  return name.replace(/[^a-z0-9-]/gi, '_');
}

/** The plots of a run: file name → SVG text. */
export function benchPlots(run: BenchRun): Map<string, string> {
  const { doc } = run;
  const files = new Map<string, string>();
  const ran = doc.results.map((r, i) => ({ r, i })).filter(({ r }) => r.skipped === null && r.error === null && r.throughput_cmds_per_s !== null);
  const multiPolicy = new Set(doc.results.map((r) => r.policy)).size > 1;
  const pol = (p: string): string => (multiPolicy ? ` ${p}` : '');

  // Latency CDF per path: every latency row of the path, and the floor round trip.
  for (const path of [...new Set(doc.results.map((r) => r.path))]) {
    const rows = ran.filter(({ r }) => r.path === path && r.ratio_basis === 'latency_p50');
    if (rows.length === 0) continue;
    const series: Series[] = rows.map(({ r, i }) => ({
      name: `${r.workload}${r.batch > 1 ? ` ×${r.batch}` : ''} ${r.sync}${r.producers > 1 ? ` p${r.producers}` : ''}${pol(r.policy)}`,
      points: run.cdf.get(i) ?? [],
    }));
    for (const p of new Set(rows.map(({ r }) => r.policy))) {
      const c = run.floorCdf.get(p);
      if (c !== undefined) series.push({ name: `floor round trip ${p}`, points: c, dashed: true });
    }
    files.set(
      `latency-cdf-${safe(path)}.svg`,
      lineChart({ title: `Invalidation latency CDF: ${path}`, xLabel: 'latency (log scale)', yLabel: 'fraction of operations ≤ latency', xScale: 'log10', yScale: 'linear', yRange: [0, 1], series, xFormat: tick(fmtNs), yFormat: (v) => v.toFixed(1) }),
    );
  }

  // Throughput against producers: tlbi-va at each batch, per path, sync mode and policy.
  const byP = new Map<string, [number, number][]>();
  for (const { r } of ran.filter(({ r }) => r.workload === 'tlbi-va')) {
    const k = `${r.path} tlbi-va ×${r.batch} ${r.sync}${pol(r.policy)}`;
    const s = byP.get(k) ?? [];
    s.push([r.producers, r.throughput_cmds_per_s!]);
    byP.set(k, s);
  }
  files.set(
    'throughput-vs-producers.svg',
    lineChart({
      title: 'Throughput against producers (TLBI_NH_VA batches with CMD_SYNC)',
      xLabel: 'producers',
      yLabel: 'commands per second (log scale)',
      xScale: 'linear',
      xIntegers: true,
      yScale: 'log10',
      series: [...byP].map(([name, points]) => ({ name, points: points.sort((a, b) => a[0] - b[0]) })),
      xFormat: (v) => String(v),
      yFormat: tick(fmtRate),
    }),
  );

  // Throughput against batch: synced batches and streams per path, and the bare ring.
  const minProd = Math.min(...doc.results.map((r) => r.producers));
  const byB = new Map<string, [number, number][]>();
  for (const { r } of ran.filter(({ r }) => (r.workload === 'tlbi-va' || r.workload === 'stream') && r.producers === minProd)) {
    const k = `${r.path} ${r.workload} ${r.sync}${pol(r.policy)}`;
    const s = byB.get(k) ?? [];
    s.push([r.batch, r.throughput_cmds_per_s!]);
    byB.set(k, s);
  }
  const series: Series[] = [...byB].map(([name, points]) => ({ name, points: points.sort((a, b) => a[0] - b[0]) }));
  // The bare ring at the batch sizes of the run (it is also measured at the entries per
  // doorbell of the fixed shapes: 2, 3, batch + 1; those points belong to other rows).
  const batches = new Set(doc.results.map((r) => r.batch));
  for (const fl of doc.floors) {
    const q = Math.min(...fl.ring.map((x) => x.queue_log2));
    const pts = fl.ring.filter((x) => x.queue_log2 === q && batches.has(x.batch)).map((x) => [x.batch, x.throughput_cmds_per_s] as [number, number]);
    if (pts.length > 0) series.push({ name: `bare ring${pol(fl.policy)}`, points: pts.sort((a, b) => a[0] - b[0]), dashed: true });
  }
  files.set(
    'throughput-vs-batch.svg',
    lineChart({ title: 'Throughput against batch size (commands per doorbell)', xLabel: 'batch (log scale)', yLabel: 'commands per second (log scale)', xScale: 'log2', yScale: 'log10', series, xFormat: (v) => String(v), yFormat: tick(fmtRate) }),
  );
  return files;
}
