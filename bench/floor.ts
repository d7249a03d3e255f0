/**
 * The floor of the medium: what two worker threads on one SharedArrayBuffer can do at best with
 * a given wait policy, measured in the same run as the paths (node-platform.md §1.5–§1.7).
 *
 * - Round trip: worker A stores a sequence number and wakes B if B sleeps; B waits for it, stores
 *   it back and wakes A; A times every round trip. Both sides wait with the model's own
 *   primitive (waitFor, src/mem/wait.ts) and policy, and notify only announced sleepers, as the
 *   device and driver do.
 * - Ring: a bare single-producer ring of 16-byte entries with SMMU-style PROD/CONS (index plus
 *   wrap bit, src/ring) at the offsets of SMMU_CMDQ_PROD and SMMU_CMDQ_CONS in a 64 KiB page, so
 *   the false sharing of the real register map (both in one 64-byte line) is paid here too. The
 *   producer writes the four words of each entry with plain stores and publishes PROD with one
 *   Atomics.store per doorbell; the consumer reads PROD, reads and checks every entry once, and
 *   publishes CONS once per drained chunk.
 *
 * This module is the layout and the two sides' loops; floor-worker.ts runs them in a thread.
 */
import * as ring from '../src/ring/index.ts';
import { notifySleepers, waitFor, type WaitPolicy } from '../src/mem/wait.ts';
import { REG } from '../src/spec/registers.ts';
import { COMMAND_WORDS } from '../src/spec/commands.ts';
import { now, timeLoop, type TimedLoop } from './timing.ts';

/** One 64 KiB page, as SMMU page 0. */
const PAGE_BYTES = 0x1_0000;
/** Word indices in the floor buffer. PROD and CONS where the register map puts them (§6.3.27, §6.3.28). */
export const FLOOR = {
  PROD: REG.SMMU_CMDQ_PROD.offset >>> 2,
  CONS: REG.SMMU_CMDQ_CONS.offset >>> 2,
  // Control words, each in a 64-byte line of its own, in the page's unused range.
  PING: 0x400 >>> 2,
  PONG: 0x440 >>> 2,
  PING_SLEEPERS: 0x480 >>> 2,
  PONG_SLEEPERS: 0x4c0 >>> 2,
  PROD_SLEEPERS: 0x500 >>> 2,
  CONS_SLEEPERS: 0x540 >>> 2,
  /** Ring entries the producer published in all, or -1 while it is still producing. */
  TOTAL: 0x580 >>> 2,
  /** First word of the queue. */
  QUEUE: PAGE_BYTES >>> 2,
} as const;

/** The round trip's "stop" value: no round trip uses a negative sequence number. */
const END = -1;

export function floorBufferBytes(maxLog2: number): number {
  return PAGE_BYTES + ((COMMAND_WORDS * 4) << maxLog2);
}

/** Zero the words a test uses (between tests, from the thread that orchestrates). */
export function resetFloor(i32: Int32Array): void {
  for (const k of [FLOOR.PROD, FLOOR.CONS, FLOOR.PING, FLOOR.PONG]) Atomics.store(i32, k, 0);
  Atomics.store(i32, FLOOR.TOTAL, -1);
}

/** A wait that the other side of the floor will end; generous deadline, the policy's spinning. */
function floorPolicy(p: WaitPolicy): WaitPolicy {
  return { ...p, timeoutMs: Math.max(p.timeoutMs, 10_000) };
}

// ---------------------------------------------------------------------------------------------
// Round trip
// ---------------------------------------------------------------------------------------------

/** Side A: time `warmup + samples` round trips (fewer if `maxMs` passes), then tell B to stop. */
export function rttPing(i32: Int32Array, policy: WaitPolicy, warmup: number, samples: number, maxMs: number): TimedLoop {
  const pol = floorPolicy(policy);
  let seq = 0;
  const describe = (): string => `the floor's pong of round trip ${seq} (PONG reads ${Atomics.load(i32, FLOOR.PONG)})`;
  const op = (): void => {
    seq++;
    Atomics.store(i32, FLOOR.PING, seq);
    notifySleepers(i32, FLOOR.PING, FLOOR.PING_SLEEPERS);
    const want = seq;
    waitFor(i32, FLOOR.PONG, () => Atomics.load(i32, FLOOR.PONG) === want, pol, describe, FLOOR.PONG_SLEEPERS);
  };
  const r = timeLoop(op, warmup, samples, maxMs);
  Atomics.store(i32, FLOOR.PING, END);
  Atomics.notify(i32, FLOOR.PING);
  return r;
}

/** Side B: answer every ping until A says stop. Returns the round trips answered. */
export function rttPong(i32: Int32Array, policy: WaitPolicy): number {
  const pol = floorPolicy(policy);
  let expect = 1;
  const describe = (): string => `the floor's ping ${expect} (PING reads ${Atomics.load(i32, FLOOR.PING)})`;
  for (;;) {
    const want = expect;
    waitFor(i32, FLOOR.PING, () => {
      const v = Atomics.load(i32, FLOOR.PING);
      return v === want || v === END;
    }, pol, describe, FLOOR.PING_SLEEPERS);
    if (Atomics.load(i32, FLOOR.PING) === END) return expect - 1;
    Atomics.store(i32, FLOOR.PONG, want);
    notifySleepers(i32, FLOOR.PONG, FLOOR.PONG_SLEEPERS);
    expect++;
  }
}

// ---------------------------------------------------------------------------------------------
// Ring
// ---------------------------------------------------------------------------------------------

export interface RingRun {
  /** Entries published and consumed. */
  entries: number;
  doorbells: number;
  /** ns from the first entry written to the last one seen consumed. */
  elapsedNs: number;
}

/**
 * Producer: publish entries `batch` per doorbell (pieces of at most the queue size) until at
 * least `entries` are out and `minMs` have passed, or `maxMs` passed, then wait until all are
 * consumed.
 */
export function ringProduce(i32: Int32Array, u32: Uint32Array, policy: WaitPolicy, log2: number, batch: number, entries: number, minMs: number, maxMs: number): RingRun {
  const pol = floorPolicy(policy);
  const cap = 1 << log2;
  const idxMask = cap - 1;
  const limit = BigInt(Math.round(maxMs * 1e6));
  const least = BigInt(Math.round(minMs * 1e6));
  let prod = 0;
  let cons = 0;
  let seq = 0;
  let doorbells = 0;
  const describe = (): string => `space in the floor ring (PROD 0x${prod.toString(16)}, CONS 0x${Atomics.load(i32, FLOOR.CONS).toString(16)})`;
  const t0 = now();
  let more = true;
  while (more) {
    let left = batch;
    while (left > 0) {
      const k = Math.min(left, cap);
      if (ring.space(prod, cons, log2) < k) {
        cons = Atomics.load(i32, FLOOR.CONS);
        if (ring.space(prod, cons, log2) < k) {
          const p = prod;
          waitFor(i32, FLOOR.CONS, () => ring.space(p, Atomics.load(i32, FLOOR.CONS), log2) >= k, pol, describe, FLOOR.CONS_SLEEPERS);
          cons = Atomics.load(i32, FLOOR.CONS);
        }
      }
      for (let j = 0; j < k; j++) {
        const w = FLOOR.QUEUE + (prod & idxMask) * COMMAND_WORDS;
        // Four plain stores; the consumer checks w1 == ~w0 and w0 == its own count.
        u32[w] = seq;
        u32[w + 1] = ~seq >>> 0;
        u32[w + 2] = (seq ^ 0x5a5a_5a5a) >>> 0;
        u32[w + 3] = (seq + 1) >>> 0;
        seq++;
        prod = ring.inc(prod, 1, log2);
      }
      // The doorbell: Atomics.store orders the plain stores above before it (release).
      Atomics.store(i32, FLOOR.PROD, prod);
      notifySleepers(i32, FLOOR.PROD, FLOOR.PROD_SLEEPERS);
      doorbells++;
      left -= k;
    }
    if (seq >= entries || (doorbells & 63) === 0) {
      const t = now() - t0;
      more = t <= limit && (seq < entries || t < least);
    }
  }
  Atomics.store(i32, FLOOR.TOTAL, seq);
  Atomics.notify(i32, FLOOR.PROD);
  const last = prod;
  waitFor(i32, FLOOR.CONS, () => Atomics.load(i32, FLOOR.CONS) === last, pol, describe, FLOOR.CONS_SLEEPERS);
  const t1 = now();
  return { entries: seq, doorbells, elapsedNs: Number(t1 - t0) };
}

/** Consumer: drain and check every entry until the producer's total is consumed. Returns the bad entries seen. */
export function ringConsume(i32: Int32Array, u32: Uint32Array, policy: WaitPolicy, log2: number): { entries: number; bad: number } {
  const pol = floorPolicy(policy);
  const idxMask = (1 << log2) - 1;
  let cons = 0;
  let count = 0;
  let bad = 0;
  const describe = (): string => `entries in the floor ring (PROD 0x${Atomics.load(i32, FLOOR.PROD).toString(16)}, CONS 0x${cons.toString(16)})`;
  for (;;) {
    const c = cons;
    const n = count;
    waitFor(i32, FLOOR.PROD, () => Atomics.load(i32, FLOOR.PROD) !== c || Atomics.load(i32, FLOOR.TOTAL) === n, pol, describe, FLOOR.PROD_SLEEPERS);
    const prod = Atomics.load(i32, FLOOR.PROD);
    while (cons !== prod) {
      const w = FLOOR.QUEUE + (cons & idxMask) * COMMAND_WORDS;
      const w0 = u32[w]!;
      const w1 = u32[w + 1]!;
      if (w0 !== count >>> 0 || w1 !== ~w0 >>> 0) bad++;
      count++;
      cons = ring.inc(cons, 1, log2);
    }
    Atomics.store(i32, FLOOR.CONS, cons);
    notifySleepers(i32, FLOOR.CONS, FLOOR.CONS_SLEEPERS);
    if (Atomics.load(i32, FLOOR.TOTAL) === count) return { entries: count, bad };
  }
}
