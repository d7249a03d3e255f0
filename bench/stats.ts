/**
 * Latency statistics from per-operation samples (ns), exact: the samples are sorted and read at
 * nearest-rank percentiles. node-platform.md §3: for runs up to ~10^7 samples sorting a
 * Float64Array is exact and cheap; perf_hooks histograms are for streaming runs.
 */

/** The fixed latency summary every result carries (ns). */
export interface LatencySummary {
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
  mean: number;
}

export interface SampleStats extends LatencySummary {
  min: number;
  count: number;
}

/** Percentiles published, in the order of the JSON keys. */
export const PERCENTILES = [
  ['p50', 0.5],
  ['p90', 0.9],
  ['p99', 0.99],
  ['p999', 0.999],
] as const;

/** Nearest-rank percentile of an ascending array of `n` values: the smallest value ≥ q of them. */
export function nearestRank(sorted: ArrayLike<number>, n: number, q: number): number {
  if (n <= 0) return Number.NaN;
  const i = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
  return sorted[i]!;
}

/** Round to one decimal place: the published unit is ns and the clock ticks in whole ns. */
export function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

/**
 * Sort the first `n` samples in place and summarise them. Values are rounded to 0.1 ns so that
 * every published number is the one ratios are computed from.
 */
export function summarize(samples: Float64Array, n = samples.length): SampleStats {
  const s = samples.subarray(0, n).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += s[i]!;
  return {
    p50: round1(nearestRank(s, n, 0.5)),
    p90: round1(nearestRank(s, n, 0.9)),
    p99: round1(nearestRank(s, n, 0.99)),
    p999: round1(nearestRank(s, n, 0.999)),
    max: round1(n > 0 ? s[n - 1]! : Number.NaN),
    mean: round1(n > 0 ? sum / n : Number.NaN),
    min: round1(n > 0 ? s[0]! : Number.NaN),
    count: n,
  };
}

/** Only the six published keys, in their documented order. */
export function latencyOf(s: LatencySummary): LatencySummary {
  return { p50: s.p50, p90: s.p90, p99: s.p99, p999: s.p999, max: s.max, mean: s.mean };
}

/**
 * Points of the empirical CDF of an ascending array, for plots: `[ns, fraction ≤ ns]`, evenly
 * spaced in probability with extra points in the tail (99 %, 99.9 %, 99.99 %, max).
 */
export function cdfPoints(sorted: ArrayLike<number>, n: number, points = 100): [number, number][] {
  if (n === 0) return [];
  const qs = new Set<number>();
  for (let i = 0; i <= points; i++) qs.add(i / points);
  for (const q of [0.95, 0.99, 0.995, 0.999, 0.9999]) qs.add(q);
  const out: [number, number][] = [];
  for (const q of [...qs].sort((a, b) => a - b)) {
    const i = Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1));
    out.push([sorted[i]!, (i + 1) / n]);
  }
  return out;
}

/**
 * `v` in the first unit where it shows as at most 3 significant digits below 1000 (so that 999.96
 * µs reads 1.00 ms, never "1.00e+3 µs"); the last unit takes anything larger.
 */
function scaled(v: number, units: readonly (readonly [number, string])[]): string {
  for (let i = 0; i < units.length; i++) {
    const [div, name] = units[i]!;
    const x = (v / div).toPrecision(3);
    if (Number(x) < 1000 || i === units.length - 1) return `${x} ${name}`;
  }
  return String(v);
}

/** Human-readable duration from ns: 312 ns, 4.71 µs, 81.2 µs, 1.20 ms. */
export function fmtNs(ns: number | null | undefined): string {
  if (ns === null || ns === undefined || !Number.isFinite(ns)) return '-';
  if (Math.round(ns) < 1_000) return `${ns.toFixed(0)} ns`;
  return scaled(ns, [[1e3, 'µs'], [1e6, 'ms'], [1e9, 's']]);
}

/** Human-readable rate: 3.61 M/s, 812 k/s. */
export function fmtRate(perS: number | null | undefined): string {
  if (perS === null || perS === undefined || !Number.isFinite(perS)) return '-';
  if (Math.round(perS) < 1_000) return `${perS.toFixed(0)} /s`;
  return scaled(perS, [[1e3, 'k/s'], [1e6, 'M/s'], [1e9, 'G/s']]);
}
