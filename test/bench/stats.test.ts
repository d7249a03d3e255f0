import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { cdfPoints, fmtNs, fmtRate, nearestRank, summarize } from '../../bench/stats.ts';
import { ratioToFloor } from '../../bench/harness.ts';

describe('latency statistics', () => {
  it('reads nearest-rank percentiles: the smallest sample with at least q of them at or below it', () => {
    const s = Float64Array.from({ length: 1000 }, (_, i) => 1000 - i); // 1000 … 1, unsorted
    const st = summarize(s);
    expect(st).toEqual({ p50: 500, p90: 900, p99: 990, p999: 999, max: 1000, mean: 500.5, min: 1, count: 1000 });
    expect(nearestRank([5], 1, 0.999)).toBe(5);
    expect(nearestRank([1, 2, 3, 4], 4, 0.5)).toBe(2);
    expect(nearestRank([1, 2, 3, 4], 4, 0.51)).toBe(3);
  });

  it('summarises only the first n samples', () => {
    const s = Float64Array.of(3, 1, 2, 1e9, 1e9);
    expect(summarize(s, 3)).toMatchObject({ p50: 2, max: 3, mean: 2, count: 3 });
  });

  it('gives monotone percentiles and CDF points for any samples', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 10_000_000 }), { minLength: 1, maxLength: 500 }), (xs) => {
        const st = summarize(Float64Array.from(xs));
        expect(st.min).toBeLessThanOrEqual(st.p50);
        expect(st.p50).toBeLessThanOrEqual(st.p90);
        expect(st.p90).toBeLessThanOrEqual(st.p99);
        expect(st.p99).toBeLessThanOrEqual(st.p999);
        expect(st.p999).toBeLessThanOrEqual(st.max);
        expect(st.mean).toBeLessThanOrEqual(st.max);
        const sorted = Float64Array.from(xs).sort();
        const c = cdfPoints(sorted, sorted.length);
        for (let i = 1; i < c.length; i++) {
          expect(c[i]![0]).toBeGreaterThanOrEqual(c[i - 1]![0]);
          expect(c[i]![1]).toBeGreaterThanOrEqual(c[i - 1]![1]);
        }
        expect(c[c.length - 1]).toEqual([sorted[sorted.length - 1], 1]);
      }),
    );
  });

  it('relates a row to its floor: p50 over the round trip, or the bare ring rate over the row rate', () => {
    expect(ratioToFloor('latency_p50', 1460, 365, 1e6, 2e6)).toBe(4);
    expect(ratioToFloor('throughput', 1460, 365, 1_000_000, 3_000_000)).toBe(3);
    expect(ratioToFloor('throughput', 1, 1, 3, 1)).toBe(0.3333);
    expect(ratioToFloor('latency_p50', null, 365, 1, 1)).toBeNull();
    expect(ratioToFloor('throughput', 1, 1, 1, null)).toBeNull();
  });

  it('prints durations and rates with their unit', () => {
    expect([fmtNs(312), fmtNs(4712), fmtNs(81_200), fmtNs(1_204_000), fmtNs(null)]).toEqual(['312 ns', '4.71 µs', '81.2 µs', '1.20 ms', '-']);
    expect([fmtRate(3_612_000), fmtRate(812_000), fmtRate(12), fmtRate(null)]).toEqual(['3.61 M/s', '812 k/s', '12 /s', '-']);
    // At a unit's edge the value moves to the next unit instead of reading 1.00e+3.
    expect([fmtNs(999.6), fmtNs(999_960), fmtNs(999_400), fmtNs(2.5e9)]).toEqual(['1.00 µs', '1.00 ms', '999 µs', '2.50 s']);
    expect([fmtRate(999_960), fmtRate(999.7), fmtRate(4.2e9)]).toEqual(['1.00 M/s', '1.00 k/s', '4.20 G/s']);
  });
});
