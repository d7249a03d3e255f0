import { describe, expect, it } from 'vitest';
import { now, timeLoop } from '../../bench/timing.ts';

/** An operation that lasts at least `ns` (busy-waits on the clock). */
const slowOp = (ns: number) => (): void => {
  const end = now() + BigInt(ns);
  while (now() < end);
};

describe('timeLoop', () => {
  it('makes exactly the operations asked for when no deadline is near, one sample each', () => {
    let n = 0;
    const r = timeLoop(() => void n++, 10, 100, 3_600_000);
    expect([r.warmedUp, r.count, n, r.samples.length]).toEqual([10, 100, 110, 100]);
    expect(r.endNs >= r.startNs).toBe(true);
  });

  it('stops each phase after the first operation past the deadline, however slow the operations are', () => {
    // Each operation lasts at least 2 ms and the deadline is 1 ms: whatever else the machine does,
    // the first operation of each phase already passes it, so each phase makes exactly one.
    const r = timeLoop(slowOp(2_000_000), 100, 100, 1);
    expect([r.warmedUp, r.count]).toEqual([1, 1]);
    expect(r.samples[0]!).toBeGreaterThanOrEqual(2_000_000);
  });
});
