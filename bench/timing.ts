/**
 * Per-operation timing inside a worker. Each sample is the difference of two consecutive
 * process.hrtime.bigint() readings taken around one operation, one reading per operation (the
 * end of one sample is the start of the next), into a preallocated Float64Array: no allocation
 * per sample beyond the bigint the clock returns. node-platform.md §1.3: a reading pair costs
 * ~23 ns (p50) here; `timerOverhead` measures it on the machine at hand and every result
 * reports it.
 */
import { summarize } from './stats.ts';

export const now = process.hrtime.bigint;

export interface TimerOverhead {
  /** ns between two back-to-back readings: p50 and p99. */
  p50: number;
  p99: number;
}

/** Back-to-back clock readings: what every sample includes beyond the operation itself. */
export function timerOverhead(n = 20_000): TimerOverhead {
  const s = new Float64Array(n);
  let prev = now();
  for (let i = 0; i < n; i++) {
    const t = now();
    s[i] = Number(t - prev);
    prev = t;
  }
  const st = summarize(s);
  return { p50: st.p50, p99: st.p99 };
}

export interface TimedLoop {
  /** Untimed operations made (fewer than asked when the warm-up reached `maxMs`). */
  warmedUp: number;
  /** Per-operation ns; only the first `count` are valid. */
  samples: Float64Array;
  count: number;
  /** hrtime readings (ns) at the start and at the end of the timed loop (monotonic, process-wide). */
  startNs: bigint;
  endNs: bigint;
}

/**
 * An operation slower than this (ns) makes the timed loop check its deadline after every
 * operation rather than every 64: a path taking milliseconds per operation (a VM path whose
 * threads outnumber the cores) would otherwise overrun `maxMs` by 64 of them.
 */
const SLOW_OP_NS = 10_000;

/**
 * Run `op` up to `warmup` times untimed, then up to `samples` times timed; each phase stops
 * early once `maxMs` have passed (the warm-up checks the clock after every operation, the timed
 * loop every 64 operations, or after every one slower than SLOW_OP_NS, so a slow path still
 * ends in time). `beforeTimed` runs between the two phases (a start barrier for several
 * producers).
 */
export function timeLoop(op: () => void, warmup: number, samples: number, maxMs: number, beforeTimed?: () => void): TimedLoop {
  const limit = BigInt(Math.round(maxMs * 1e6));
  const w0 = now();
  let warmedUp = 0;
  while (warmedUp < warmup) {
    op();
    warmedUp++;
    if (now() - w0 > limit) break;
  }
  beforeTimed?.();
  const s = new Float64Array(samples);
  const t0 = now();
  let prev = t0;
  let count = 0;
  while (count < samples) {
    op();
    const t = now();
    const d = Number(t - prev);
    s[count++] = d;
    prev = t;
    if (((count & 63) === 0 || d > SLOW_OP_NS) && t - t0 > limit) break;
  }
  return { warmedUp, samples: s, count, startNs: t0, endNs: prev };
}
