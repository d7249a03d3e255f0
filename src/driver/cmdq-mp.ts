/**
 * Many guest CPUs, one command queue: the lock-free multi-producer insertion Linux's arm-smmu-v3
 * driver uses for SMMU_CMDQ (shared/reference/driver-and-qemu.md A1), written for shared memory.
 * Each CPU is its own worker; everything the CPUs share is guest RAM (kernel memory), allocated
 * once by the CPU that reset the SMMU and described to the others by a plain-object layout.
 *
 * The shared state of one queue (MpState), each hot word on its own 64-byte line:
 * - the shadow word: 64 bits, prod in bits [31:0], cons in bits [63:32] (Linux's
 *   arm_smmu_ll_queue, little-endian). Bit 31 of prod is the OWNED flag (CMDQ_PROD_OWNED_FLAG):
 *   someone is gathering. Every access is a 64-bit Atomics operation on a BigInt64Array view:
 *   Linux also updates the halves on their own (fetch_andnot on prod, WRITE_ONCE of cons); the
 *   ECMAScript memory model gives no guarantee for atomics of different sizes on overlapping
 *   bytes, so those become 64-bit compareExchange loops with the same effect.
 * - owner_prod: the queue pointer the next owner waits for before it gathers.
 * - the lock: Linux's shared/exclusive counter (0 free, N > 0 shared holders, INT_MIN + N
 *   exclusive with N shared waiters), with the 2025 fairness fix: an exclusive unlock clears only
 *   the sign bit, so the shared increments made meanwhile survive.
 * - a generation counter bumped whenever the shadow cons is written: what CPUs waiting for room
 *   sleep on (Atomics.wait needs an Int32 word; the shadow word is 64-bit).
 * - the valid bitmap: one bit per slot, in 32-bit words (Linux uses longs; 32 is the widest
 *   Atomics.xor on an Int32Array, and only the run length per xor changes). A slot is valid when
 *   its bit is the inverse of its wrap bit, so marking is an xor and the map never needs clearing.
 * - for an ECMDQ shared by several CPUs: a doorbell lock, the last PROD written and the current
 *   ERRACK, so that error recovery can rewrite SMMU_ECMDQ_PROD without moving it backwards.
 *
 * The insertion, in Linux's five phases: reserve slots with one compareExchange of the shadow
 * word (setting OWNED; the CPU that found OWNED clear is the owner), write the entries, mark them
 * valid, and, owner only, wait for owner_prod, clear OWNED (which returns the end of everything
 * reserved meanwhile), wait until that whole range is valid, write the hardware PROD once and
 * hand over owner_prod. A CMD_SYNC waiter holds the lock shared from before its slot is valid
 * until it has seen the CMD_SYNC complete, so the queue cannot lap it unnoticed; the last
 * shared holder to leave writes the cons it observed into the shadow word.
 *
 * Waits are src/mem/wait.ts waitFor with a deadline; a timeout names the shadow prod/cons,
 * owner_prod, the lock, and the hardware PROD, CONS and GERROR.
 */

import type { PhysMem } from '../mem/phys.ts';
import { notifySleepers, waitFor, WaitTimeout, type WaitPolicy } from '../mem/wait.ts';
import * as ring from '../ring/index.ts';
import { cerrorName } from '../spec/cerror.ts';
import { COMMAND_BYTES, COMMAND_WORDS } from '../spec/commands.ts';
import { REG, regGet, regSet } from '../spec/registers.ts';
import { cmdqErrorAction, readSlot, writeMsiSync, writeSlot } from './cmdq.ts';
import type { RegisterPort } from './port.ts';

// ---------------------------------------------------------------------------------------------
// Constants and layout
// ---------------------------------------------------------------------------------------------

/** Bit 31 of the shadow prod: a CPU is gathering (Linux's CMDQ_PROD_OWNED_FLAG, = Q_OVERFLOW_FLAG). */
export const CMDQ_PROD_OWNED_FLAG = 0x8000_0000;
/** The exclusive state of the lock: INT_MIN, plus one per shared waiter. */
export const LOCK_EXCLUSIVE = -0x8000_0000;
/** Clears the sign bit of the lock counter (the fair exclusive unlock). */
const LOCK_COUNT_MASK = 0x7fff_ffff;
/** Slots per valid-bitmap word. */
export const VALID_WORD_BITS = 32;
const VALID_WORD_SHIFT = 5;
/** One cache line: every hot word of the shared state gets its own. */
export const MP_LINE_BYTES = 64;
/**
 * The smallest multi-producer queue: 2^7 entries. Linux refuses queues of 64 entries or fewer,
 * since a full batch (64) plus its CMD_SYNC must fit; it also keeps the bitmap whole words.
 */
export const MP_MIN_LOG2 = 7;

/** Byte offsets in the shared state block of one multi-producer queue. */
export const MP = {
  /** 64-bit: prod [31:0] (OWNED at bit 31), cons [63:32]. */
  SHADOW: 0,
  /** Int32: the queue pointer the next owner waits for. */
  OWNER_PROD: 1 * MP_LINE_BYTES,
  /** Int32: the shared/exclusive lock counter. */
  LOCK: 2 * MP_LINE_BYTES,
  /** Int32: bumped (and notified) whenever the shadow cons is written. */
  CONS_GEN: 3 * MP_LINE_BYTES,
  /** Int32: threads sleeping on any word of this block (writers notify only when non-zero). */
  SLEEPERS: 4 * MP_LINE_BYTES,
  /** ECMDQ only. Int32 mutex: held around a SMMU_ECMDQ_PROD write. */
  DOORBELL_LOCK: 5 * MP_LINE_BYTES,
  /** ECMDQ only. Int32: the WR (index and wrap) of the last SMMU_ECMDQ_PROD write. */
  LAST_PROD: 5 * MP_LINE_BYTES + 4,
  /** ECMDQ only. Int32: the ERRACK every SMMU_ECMDQ_PROD write carries (§3.5.6.3). */
  ERRACK: 5 * MP_LINE_BYTES + 8,
  /** The valid bitmap, 2^log2 / 32 Int32 words. */
  VALID_MAP: 6 * MP_LINE_BYTES,
} as const;

/** Bytes of the shared state of a queue of 2^log2 entries (a whole number of lines). */
export function mpStateBytes(log2: number): number {
  const mapBytes = (ring.entries(log2) / VALID_WORD_BITS) * 4;
  return MP.VALID_MAP + Math.ceil(mapBytes / MP_LINE_BYTES) * MP_LINE_BYTES;
}

/**
 * The "kernel" block every CPU shares: the GERROR handler lock, so that exactly one CPU fixes a
 * command in error and read-modify-writes SMMU_GERRORN at a time.
 */
export const KERNEL = {
  /** Int32 mutex: 0 free, else 1 + the holding CPU. */
  HANDLER_LOCK: 0,
  /** Int32: threads sleeping on the handler lock. */
  SLEEPERS: 4,
  BYTES: MP_LINE_BYTES,
} as const;

/** One command queue as the CPUs see it: plain data, passed to every CPU worker. */
export interface QueueDesc {
  /** 'CMDQ', or 'ECMDQ<n>'. */
  readonly name: string;
  /** -1 for SMMU_CMDQ, else the ECMDQ number n (page × 2^LOG2NUMQ + queue, the model's numbering). */
  readonly ecmdq: number;
  /** Physical address of entry 0. */
  readonly base: number;
  readonly log2: number;
  /** Offsets, in the SMMU register window, of the queue's PROD and CONS registers. */
  readonly prodOff: number;
  readonly consOff: number;
  /** PA of the queue's multi-producer state (MP), or -1 for a queue one CPU owns alone. */
  readonly mpState: number;
  /** ECMDQ: the ERRACK the queue was enabled with (§3.5.6.3); 0 for the CMDQ. */
  readonly errack: number;
}

// ---------------------------------------------------------------------------------------------
// Per-CPU context: counters, log, waits
// ---------------------------------------------------------------------------------------------

/** What one CPU did, for tests and benchmarks (all monotonic). */
export interface CpuCounters {
  /** Failed compareExchange attempts of the slot reservation (Linux's cmpxchg loop). */
  cmpxchgRetries: number;
  /** Reservations that found no room and waited for the queue to drain (poll_until_not_full). */
  queueFull: number;
  /** Insertions in which this CPU was the owner: it gathered and rang the doorbell. */
  timesOwner: number;
  /** PROD register writes (doorbells and ERRACK writes). */
  doorbells: number;
  /** Polls made by this CPU's waits (waitFor's count). */
  pollIterations: number;
  /** Sleeps (Atomics.wait calls) this CPU's waits made, derived from the poll counts and the policy. */
  waits: number;
  /** Commands inserted (CMD_SYNCs not counted). */
  commands: number;
  /** CMD_SYNCs inserted and waited for. */
  syncs: number;
  /** Command errors this CPU recovered (fixed a slot or acknowledged a retry). */
  errorsRecovered: number;
}

export function newCpuCounters(): CpuCounters {
  return { cmpxchgRetries: 0, queueFull: 0, timesOwner: 0, doorbells: 0, pollIterations: 0, waits: 0, commands: 0, syncs: 0, errorsRecovered: 0 };
}

/** A command error as the CPU that recovered it saw it. */
export interface CpuIssueError {
  readonly queue: string;
  /** The queue pointer (index and wrap) of the command in error: CONS.RD at the time. */
  readonly index: number;
  /** CMDQ_CONS.ERR or ECMDQ_CONS.ERR_REASON (§7.1). */
  readonly code: number;
  readonly name: string;
}

/** What a CPU's error handling did: the driver's log entries, per queue. */
export type CpuLogEntry =
  | {
      readonly kind: 'cmdq-skip';
      readonly queue: string;
      readonly cons: number;
      readonly code: number;
      readonly name: string;
      readonly words: readonly number[];
      readonly replacement: readonly number[];
    }
  | { readonly kind: 'cmdq-retry'; readonly queue: string; readonly cons: number; readonly code: number; readonly name: string };

/** Entries of a CPU's log kept; older ones are dropped. */
export const CPU_LOG_LIMIT = 1024;

/**
 * Longest sleep of a command-queue wait: a CPU sleeping on one word (its CMD_SYNC slot, CONS,
 * the shadow generation) must wake up to notice a command error, which shows in other words.
 */
export const CPU_SLICE_MS = 1;

/**
 * Polls a CMD_SYNC wait makes (hybrid mode) for the SMMU to show that it is running before the
 * wait gives up spinning (CpuContext.syncWaitPolicy). A running SMMU takes a doorbell off the bus
 * within a fraction of a microsecond, or publishes CONS at the end of the chunk it is consuming;
 * 2 000 polls are tens of microseconds, node-platform.md §1.6's shorter hybrid spin.
 */
export const SMMU_RUNNING_SPIN = 2_000;

/** What a CPU's producers share: its register port, memory, policy, counters and log. */
export class CpuContext {
  readonly counters: CpuCounters = newCpuCounters();
  readonly log: CpuLogEntry[] = [];
  /** Errors recovered during the current issue() call (GuestCpu resets it per call). */
  errors: CpuIssueError[] = [];
  /** `policy` with a short sleep slice, for waits that must also notice errors. */
  readonly policy: WaitPolicy;
  /** The kernel block's handler lock. */
  readonly handler: SharedMutex;

  constructor(
    readonly cpu: number,
    readonly mem: PhysMem,
    readonly port: RegisterPort,
    policy: WaitPolicy,
    /** 'msi': Linux's MSI polling on the CMD_SYNC's own slot; 'cons': poll CONS. */
    readonly syncMode: 'msi' | 'cons',
    /** The CMD_SYNC written for CONS polling and over a command in error (buildSync(consSyncCs(sev))). */
    readonly plainSync: Uint32Array,
    kernelPa: number,
  ) {
    this.policy = { ...policy, sliceMs: Math.min(policy.sliceMs ?? CPU_SLICE_MS, CPU_SLICE_MS) };
    mem.check(kernelPa, KERNEL.BYTES);
    const k = mem.wordIndex(kernelPa);
    this.handler = new SharedMutex(mem.i32, k + KERNEL.HANDLER_LOCK / 4, k + KERNEL.SLEEPERS / 4, 'the GERROR handler lock');
  }

  /** Count a finished wait: its polls, and the sleeps those polls imply under the policy. */
  counted(polls: number, policy: WaitPolicy): void {
    this.counters.pollIterations += polls;
    this.counters.waits += sleepsOf(polls, policy);
  }

  /** Wait on an Int32 word of the board (see waitFor); counted. */
  wait(index: number, ready: () => boolean, policy: WaitPolicy, describe: () => string, sleepers: number): void {
    this.counted(waitFor(this.mem.i32, index, ready, policy, describe, sleepers), policy);
  }

  /**
   * The first part of a wait for the CMD_SYNC at queue pointer `ptr` of `q`, and the policy for
   * the rest of it. The CPU spins only while the SMMU shows that it runs: the PROD it publishes
   * has passed the CMD_SYNC (it has the doorbell) or its CONS moves. If neither happens within
   * SMMU_RUNNING_SPIN polls, the SMMU's thread is asleep or waiting for a core, possibly this
   * one: spinning on through the whole hybrid budget (20 000 polls, ~0.4 ms here) would keep it
   * off the core for all of that time, so the rest of the wait sleeps at once; the completion
   * (the MSI store, or CONS) wakes it. `done` is the wait's own condition. Spin and wait
   * policies are returned unchanged.
   */
  syncWaitPolicy(q: QueueDesc, ptr: number, done: () => boolean): WaitPolicy {
    const policy = this.policy;
    if (policy.mode !== 'hybrid') return policy;
    const port = this.port;
    const cons0 = port.peek32(q.consOff);
    const limit = Math.min(policy.spin, SMMU_RUNNING_SPIN);
    for (let k = 0; k < limit; k++) {
      if (done() || ring.consumed(ptr, port.peek32(q.prodOff), q.log2) || port.peek32(q.consOff) !== cons0) {
        this.counters.pollIterations += k;
        return policy;
      }
    }
    this.counters.pollIterations += limit;
    return { ...policy, mode: 'wait' };
  }

  /** The policy with what is left of a deadline that started at `t0`; throws WaitTimeout when none is. */
  remaining(t0: number, describe: () => string): WaitPolicy {
    const left = this.policy.timeoutMs - (performance.now() - t0);
    if (left <= 0) throw new WaitTimeout(describe(), this.policy.timeoutMs);
    return { ...this.policy, timeoutMs: left };
  }

  record(e: CpuLogEntry): void {
    if (this.log.length >= CPU_LOG_LIMIT) this.log.shift();
    this.log.push(e);
  }
}

/**
 * Atomics.wait calls implied by `polls` polls of one waitFor call: in hybrid mode every poll
 * after the spin phase precedes a sleep, in wait mode every poll does, in spin mode none.
 * (An upper bound: the last poll may find the condition true and not sleep.)
 */
export function sleepsOf(polls: number, policy: WaitPolicy): number {
  if (policy.mode === 'spin') return 0;
  if (policy.mode === 'wait') return polls;
  return Math.max(0, polls - policy.spin);
}

// ---------------------------------------------------------------------------------------------
// A mutex on an Int32 word
// ---------------------------------------------------------------------------------------------

/** A sleeping mutex on one Int32 word: 0 free, else 1 + the holder's CPU number. */
export class SharedMutex {
  constructor(
    readonly i32: Int32Array,
    readonly index: number,
    readonly sleepers: number,
    readonly what: string,
  ) {}

  tryLock(cpu: number): boolean {
    return Atomics.compareExchange(this.i32, this.index, 0, cpu + 1) === 0;
  }

  /** Take the lock, waiting (within the policy's deadline) while another CPU holds it. */
  lock(ctx: CpuContext): void {
    if (this.tryLock(ctx.cpu)) return;
    const t0 = performance.now();
    const describe = (): string => `${this.what} (held by CPU ${Atomics.load(this.i32, this.index) - 1})`;
    for (;;) {
      ctx.wait(this.index, () => Atomics.load(this.i32, this.index) === 0, ctx.remaining(t0, describe), describe, this.sleepers);
      if (this.tryLock(ctx.cpu)) return;
    }
  }

  unlock(): void {
    Atomics.store(this.i32, this.index, 0);
    notifySleepers(this.i32, this.index, this.sleepers);
  }

  get holder(): number {
    return Atomics.load(this.i32, this.index) - 1;
  }
}

// ---------------------------------------------------------------------------------------------
// The shared state of one queue
// ---------------------------------------------------------------------------------------------

const MASK32 = 0xffff_ffffn;
const HALF = 32n;

/** The 64-bit shadow value of (prod, cons): prod in the low half, cons in the high half. */
export function packShadow(prod: number, cons: number): bigint {
  return (BigInt(cons >>> 0) << HALF) | BigInt(prod >>> 0);
}

export function shadowProd(v: bigint): number {
  return Number(v & MASK32);
}

export function shadowCons(v: bigint): number {
  return Number((v >> HALF) & MASK32);
}

/**
 * Entries from `start` (inclusive) that stay in one bitmap word and before `end`: the run the
 * valid map handles with one xor or one poll. Runs never cross a lap because the queue holds a
 * whole number of bitmap words.
 */
export function validRun(start: number, end: number, log2: number): number {
  const bit = ring.idx(start, log2) & (VALID_WORD_BITS - 1);
  return Math.min(VALID_WORD_BITS - bit, ring.used(end, start, log2));
}

/** The Int32 mask of a run of `n` slots starting at bit `bit` of a bitmap word. */
export function runMask(bit: number, n: number): number {
  return n === VALID_WORD_BITS ? -1 : (((1 << n) - 1) << bit) | 0;
}

/** Views over the shared state of one multi-producer queue. */
export class MpState {
  readonly i32: Int32Array;
  /** The shadow word. */
  readonly shadow: BigInt64Array;
  /** Int32 indices into `i32`. */
  readonly ownerProd: number;
  readonly lock: number;
  readonly consGen: number;
  readonly sleepers: number;
  readonly lastProd: number;
  readonly errack: number;
  readonly valid: number;
  readonly doorbellLock: SharedMutex;

  constructor(mem: PhysMem, readonly pa: number, readonly log2: number) {
    if (log2 < MP_MIN_LOG2) throw new RangeError(`a multi-producer queue needs at least 2^${MP_MIN_LOG2} entries, not 2^${log2}`);
    mem.check(pa, mpStateBytes(log2));
    if (pa % MP_LINE_BYTES !== 0) throw new RangeError(`multi-producer state at 0x${pa.toString(16)} is not ${MP_LINE_BYTES}-byte aligned`);
    this.i32 = mem.i32;
    const w = mem.wordIndex(pa);
    this.shadow = new BigInt64Array(mem.i32.buffer, mem.offset + (pa - mem.base) + MP.SHADOW, 1);
    this.ownerProd = w + MP.OWNER_PROD / 4;
    this.lock = w + MP.LOCK / 4;
    this.consGen = w + MP.CONS_GEN / 4;
    this.sleepers = w + MP.SLEEPERS / 4;
    this.lastProd = w + MP.LAST_PROD / 4;
    this.errack = w + MP.ERRACK / 4;
    this.valid = w + MP.VALID_MAP / 4;
    this.doorbellLock = new SharedMutex(mem.i32, w + MP.DOORBELL_LOCK / 4, this.sleepers, 'the ECMDQ doorbell lock');
  }

  /**
   * Initialise (the CPU that resets the SMMU, before any other CPU attaches): the queue holds
   * [cons, prod), both as the single-producer driver left them; the slots before prod in this
   * lap were written in this lap, the others in the previous one, and the bitmap says so.
   */
  init(prod: number, cons: number, errack = 0): void {
    const log2 = this.log2;
    const p = prod & ring.ptrMask(log2);
    Atomics.store(this.shadow, 0, packShadow(p, cons & ring.ptrMask(log2)));
    Atomics.store(this.i32, this.ownerProd, p);
    Atomics.store(this.i32, this.lock, 0);
    Atomics.store(this.i32, this.consGen, 0);
    Atomics.store(this.i32, this.sleepers, 0);
    Atomics.store(this.i32, this.doorbellLock.index, 0);
    Atomics.store(this.i32, this.lastProd, p);
    Atomics.store(this.i32, this.errack, errack);
    const w = ring.wrap(p, log2);
    const words = ring.entries(log2) / VALID_WORD_BITS;
    for (let k = 0; k < words; k++) {
      let v = 0;
      for (let b = 0; b < VALID_WORD_BITS; b++) {
        const slot = k * VALID_WORD_BITS + b;
        // Marked in this lap (wrap w): bit = !w; marked last lap (or never, lap 0 = wrap 0): bit = w.
        const bit = slot < ring.idx(p, log2) ? 1 - w : w;
        v |= bit << b;
      }
      Atomics.store(this.i32, this.valid + k, v);
    }
  }

  load(): bigint {
    return Atomics.load(this.shadow, 0);
  }

  /** compareExchange of the shadow word; returns the value found. */
  cas(expected: bigint, next: bigint): bigint {
    return Atomics.compareExchange(this.shadow, 0, expected, next);
  }

  /** Clear OWNED in the shadow prod; returns the prod as it was (Linux: atomic_fetch_andnot). */
  clearOwned(): number {
    let v = this.load();
    for (;;) {
      const p = shadowProd(v);
      const seen = this.cas(v, packShadow((p & ~CMDQ_PROD_OWNED_FLAG) >>> 0, shadowCons(v)));
      if (seen === v) return p;
      v = seen;
    }
  }

  /** Write the shadow cons (Linux: WRITE_ONCE of llq.cons), then wake CPUs waiting for room. */
  setCons(cons: number): void {
    const c = cons & ring.ptrMask(this.log2);
    let v = this.load();
    for (;;) {
      const seen = this.cas(v, packShadow(shadowProd(v), c));
      if (seen === v) break;
      v = seen;
    }
    Atomics.add(this.i32, this.consGen, 1);
    notifySleepers(this.i32, this.consGen, this.sleepers);
  }

  // The lock ------------------------------------------------------------------------------------

  /** Shared lock, fast path: true when taken; false when an exclusive holder is in (the increment stays). */
  sharedLockFast(): boolean {
    return Atomics.add(this.i32, this.lock, 1) >= 0;
  }

  sharedUnlock(): void {
    Atomics.sub(this.i32, this.lock, 1);
  }

  /** Leave the shared lock unless this is the last holder (counter 1): then return false, still holding. */
  sharedTryUnlock(): boolean {
    let v = Atomics.load(this.i32, this.lock);
    for (;;) {
      if (v === 1) return false;
      const seen = Atomics.compareExchange(this.i32, this.lock, v, (v - 1) | 0);
      if (seen === v) return true;
      v = seen;
    }
  }

  exclusiveTryLock(): boolean {
    return Atomics.compareExchange(this.i32, this.lock, 0, LOCK_EXCLUSIVE) === 0;
  }

  /** Clear only the sign bit: shared increments made while held survive (the fairness fix). */
  exclusiveUnlock(): void {
    Atomics.and(this.i32, this.lock, LOCK_COUNT_MASK);
    notifySleepers(this.i32, this.lock, this.sleepers);
  }

  lockValue(): number {
    return Atomics.load(this.i32, this.lock);
  }

  // The valid map ---------------------------------------------------------------------------------

  /** Mark [start, end) valid: xor each run's bits (the polarity flips every lap). */
  setValid(start: number, end: number): void {
    const log2 = this.log2;
    let p = start & ring.ptrMask(log2);
    const e = end & ring.ptrMask(log2);
    while (p !== e) {
      const n = validRun(p, e, log2);
      const idx = ring.idx(p, log2);
      const word = this.valid + (idx >>> VALID_WORD_SHIFT);
      Atomics.xor(this.i32, word, runMask(idx & (VALID_WORD_BITS - 1), n));
      notifySleepers(this.i32, word, this.sleepers);
      p = ring.inc(p, n, log2);
    }
  }

  /** Whether the run at `p` of `n` slots (one word, one lap) is valid. */
  runValid(p: number, n: number): boolean {
    const idx = ring.idx(p, this.log2);
    const mask = runMask(idx & (VALID_WORD_BITS - 1), n);
    const want = ring.wrap(p, this.log2) === 0 ? mask : 0;
    return (Atomics.load(this.i32, this.valid + (idx >>> VALID_WORD_SHIFT)) & mask) === want;
  }

  /** Whether every slot of [start, end) is valid. */
  isValid(start: number, end: number): boolean {
    const log2 = this.log2;
    let p = start & ring.ptrMask(log2);
    const e = end & ring.ptrMask(log2);
    while (p !== e) {
      const n = validRun(p, e, log2);
      if (!this.runValid(p, n)) return false;
      p = ring.inc(p, n, log2);
    }
    return true;
  }

  /** The state in one line, for timeout messages. */
  describe(): string {
    const v = this.load();
    const p = shadowProd(v);
    const owned = (p & CMDQ_PROD_OWNED_FLAG) !== 0 ? ' OWNED' : '';
    return (
      `shadow prod ${hex(p & ~CMDQ_PROD_OWNED_FLAG)}${owned} cons ${hex(shadowCons(v))}, ` +
      `owner_prod ${hex(Atomics.load(this.i32, this.ownerProd))}, lock ${Atomics.load(this.i32, this.lock)}`
    );
  }
}

function hex(v: number): string {
  return `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// Error recovery, common to every queue
// ---------------------------------------------------------------------------------------------

const GERROR = REG.SMMU_GERROR.offset;
const GERRORN = REG.SMMU_GERRORN.offset;
const GERRORF = REG.SMMU_GERROR.f;
const CMDQ_CONS_ERR = REG.SMMU_CMDQ_CONS.f.ERR;
const CMD_WORDS_LOG2 = Math.log2(COMMAND_WORDS);

/** One bit of SMMU_GERROR as a mask. */
export function gerrorBit(f: (typeof GERRORF)[keyof typeof GERRORF]): number {
  return regSet(0, f, 1);
}
export const GERROR_CMDQ_ERR = gerrorBit(GERRORF.CMDQ_ERR);
export const GERROR_CMDQP_ERR = gerrorBit(GERRORF.CMDQP_ERR);

/** True when the given SMMU_GERROR bits are active (GERROR != GERRORN there, §6.3.19). */
export function gerrorActive(port: RegisterPort, bits: number): boolean {
  return ((port.peek32(GERROR) ^ port.peek32(GERRORN)) & bits) !== 0;
}

/**
 * Acknowledge only `bits` of SMMU_GERRORN (§6.3.20): toggle them where they are active. Other
 * CPUs (and the driver) may have other errors to handle; writing GERRORN := GERROR would
 * acknowledge theirs too. Call with the handler lock held: this is a read-modify-write.
 */
export function ackGerror(port: RegisterPort, bits: number): void {
  const g = port.read32(GERROR);
  const n = port.read32(GERRORN);
  const active = (g ^ n) & bits;
  if (active === 0) return;
  port.write32(GERRORN, (n ^ active) >>> 0);
  // The next lock holder must read GERRORN after this write took effect.
  port.drainOwn();
}

/**
 * The fix for the command at queue pointer `cons` of `q` that raised `code` (Linux's skip_err,
 * through the driver's helpers): CERROR_ILL and unknown codes get a CMD_SYNC written over the
 * slot; CERROR_ABT and CERROR_ATC_INV_SYNC are retried as they are (§7.1). Logs and counts it.
 */
export function fixCommandError(ctx: CpuContext, q: QueueDesc, cons: number, code: number): void {
  const action = cmdqErrorAction(code);
  if (action === 'none') return;
  const name = cerrorName(code);
  const ptr = cons & ring.ptrMask(q.log2);
  if (action === 'replace') {
    const w = ctx.mem.wordIndex(q.base) + (ring.idx(ptr, q.log2) << CMD_WORDS_LOG2);
    const words = readSlot(ctx.mem.u32, w);
    writeSlot(ctx.mem.u32, w, ctx.plainSync);
    ctx.record({ kind: 'cmdq-skip', queue: q.name, cons: ptr, code, name, words, replacement: [...ctx.plainSync] });
  } else {
    ctx.record({ kind: 'cmdq-retry', queue: q.name, cons: ptr, code, name });
  }
  ctx.errors.push({ queue: q.name, index: ptr, code, name });
  ctx.counters.errorsRecovered++;
}

/**
 * GERROR.CMDQ_ERR seen by a CPU (Linux's arm_smmu_gerror_handler, CMDQ part): under the handler
 * lock, look again (another CPU may have fixed it already), fix the command at CONS.RD, and
 * acknowledge CMDQ_ERR alone. Returns true when this CPU did the fix.
 */
export function recoverCmdq(ctx: CpuContext, q: QueueDesc): boolean {
  const port = ctx.port;
  ctx.handler.lock(ctx);
  try {
    if (((port.read32(GERROR) ^ port.read32(GERRORN)) & GERROR_CMDQ_ERR) === 0) return false;
    // §7.1: CONS.RD and CONS.ERR are visible before GERROR.CMDQ_ERR is.
    const cons = port.read32(q.consOff);
    fixCommandError(ctx, q, cons, regGet(cons, CMDQ_CONS_ERR));
    // The rewritten slot is plain memory; the GERRORN write (an Atomics store on the bus)
    // orders it before the SMMU's refetch.
    ackGerror(port, GERROR_CMDQ_ERR);
    return true;
  } finally {
    ctx.handler.unlock();
  }
}

// ---------------------------------------------------------------------------------------------
// The producer
// ---------------------------------------------------------------------------------------------

/** What a CPU inserts commands through: the shared CMDQ, a shared ECMDQ, or its own ECMDQ. */
export interface Producer {
  readonly queue: QueueDesc;
  /**
   * Insert cmds[start, start+count) and, if `sync`, a CMD_SYNC after them, and make sure the
   * doorbell covering them is rung. Returns the CMD_SYNC's queue pointer, or -1.
   */
  insert(cmds: readonly ArrayLike<number>[], start: number, count: number, sync: boolean): number;
  /** Wait for the CMD_SYNC `insert` returned, recovering command errors meanwhile. */
  waitSync(syncPtr: number): void;
  /** Look for an error on this CPU's queue and recover it; true when something was done. */
  recover(): boolean;
  /** The queue's state in one line (shadow and hardware), for messages. */
  describe(): string;
}

/** One slot reservation: [head, end), and whether the reserving CPU is the owner. */
export interface Reservation {
  readonly head: number;
  readonly end: number;
  readonly owner: boolean;
}

const ECMDQ_PROD = REG.SMMU_ECMDQ_PROD.f;
const ECMDQ_CONS = REG.SMMU_ECMDQ_CONS.f;

/** The SMMU_ECMDQ_PROD value that moves WR to `wr`: EN = 1 and ERRACK always ride along (§6.3.108). */
export function ecmdqProdValue(wr: number, errack: number): number {
  return regSet(regSet(wr >>> 0, ECMDQ_PROD.EN, 1), ECMDQ_PROD.ERRACK, errack);
}

/**
 * One CPU's handle on a multi-producer queue (SMMU_CMDQ, or an ECMDQ several CPUs share). The
 * phases are public methods so that tests can interleave CPUs by hand; `insert` runs them in
 * order.
 */
export class MpProducer implements Producer {
  readonly state: MpState;
  private readonly log2: number;
  private readonly ptrMask: number;
  /** Int32 index of entry 0 of the queue. */
  private readonly qWord: number;
  private readonly prodName: string;
  readonly consName: string;

  constructor(
    readonly ctx: CpuContext,
    readonly queue: QueueDesc,
  ) {
    if (queue.mpState < 0) throw new Error(`${queue.name} has no multi-producer state`);
    this.log2 = queue.log2;
    this.ptrMask = ring.ptrMask(queue.log2);
    this.state = new MpState(ctx.mem, queue.mpState, queue.log2);
    ctx.mem.check(queue.base, COMMAND_BYTES << queue.log2);
    this.qWord = ctx.mem.wordIndex(queue.base);
    this.prodName = queue.ecmdq < 0 ? 'SMMU_CMDQ_PROD' : `SMMU_ECMDQ_PROD${queue.ecmdq}`;
    this.consName = queue.ecmdq < 0 ? 'SMMU_CMDQ_CONS' : `SMMU_ECMDQ_CONS${queue.ecmdq}`;
  }

  describe(): string {
    const p = this.ctx.port;
    const g = p.peek32(GERROR);
    const n = p.peek32(GERRORN);
    const ecmdq = this.queue.ecmdq < 0 ? '' : `, shared ERRACK ${Atomics.load(this.state.i32, this.state.errack)}`;
    return (
      `${this.queue.name}: ${this.state.describe()}${ecmdq}; ${this.prodName} ${hex(p.peek32(this.queue.prodOff))}, ` +
      `${this.consName} ${hex(p.peek32(this.queue.consOff))}, SMMU_GERROR ${hex(g)}, SMMU_GERRORN ${hex(n)} (active ${hex(g ^ n)})`
    );
  }

  /** Whether this queue has an error to recover: CMDQ_ERR, or CONS.ERR != the shared ERRACK. */
  errorPending(): boolean {
    if (this.queue.ecmdq < 0) return gerrorActive(this.ctx.port, GERROR_CMDQ_ERR);
    return regGet(this.ctx.port.peek32(this.queue.consOff), ECMDQ_CONS.ERR) !== Atomics.load(this.state.i32, this.state.errack);
  }

  recover(): boolean {
    if (this.queue.ecmdq < 0) return recoverCmdq(this.ctx, this.queue);
    return this.recoverEcmdq();
  }

  /**
   * §3.5.6.3 on a shared ECMDQ: under the handler lock, if CONS.ERR still differs from the shared
   * ERRACK, fix the command at CONS.RD (ERR_REASON), then, under the doorbell lock so that WR is
   * the last one written, write PROD with ERRACK := CONS.ERR; acknowledge GERROR.CMDQP_ERR.
   */
  private recoverEcmdq(): boolean {
    const { ctx, queue: q, state: st } = this;
    const port = ctx.port;
    ctx.handler.lock(ctx);
    try {
      const cons = port.read32(q.consOff);
      const err = regGet(cons, ECMDQ_CONS.ERR);
      if (err === Atomics.load(st.i32, st.errack)) return false;
      fixCommandError(ctx, q, cons, regGet(cons, ECMDQ_CONS.ERR_REASON));
      st.doorbellLock.lock(ctx);
      try {
        Atomics.store(st.i32, st.errack, err);
        port.write32(q.prodOff, ecmdqProdValue(Atomics.load(st.i32, st.lastProd), err));
        ctx.counters.doorbells++;
      } finally {
        st.doorbellLock.unlock();
      }
      ackGerror(port, GERROR_CMDQP_ERR);
      return true;
    } finally {
      ctx.handler.unlock();
    }
  }

  insert(cmds: readonly ArrayLike<number>[], start: number, count: number, sync: boolean): number {
    const r = this.reserve(count + (sync ? 1 : 0));
    const syncPtr = this.write(r, cmds, start, count, sync);
    this.publish(r);
    if (r.owner) this.gather(r);
    this.ctx.counters.commands += count;
    return syncPtr;
  }

  /**
   * Phase 1: reserve `n` slots with one compareExchange of the shadow word, OWNED set in the new
   * prod; the owner is the CPU that found OWNED clear. Waits for room when there is none.
   */
  reserve(n: number): Reservation {
    const st = this.state;
    const log2 = this.log2;
    if (n < 1 || n > ring.entries(log2)) throw new RangeError(`cannot reserve ${n} slots in a queue of ${ring.entries(log2)}`);
    let old = st.load();
    let t0 = -1;
    for (;;) {
      let prod = shadowProd(old);
      let cons = shadowCons(old);
      while (ring.space(prod, cons, log2) < n) {
        if (t0 < 0) {
          t0 = performance.now();
          this.ctx.counters.queueFull++;
        }
        old = this.pollUntilNotFull(n, t0);
        prod = shadowProd(old);
        cons = shadowCons(old);
      }
      const next = packShadow((ring.inc(prod, n, log2) | CMDQ_PROD_OWNED_FLAG) >>> 0, cons);
      const seen = st.cas(old, next);
      if (seen === old) {
        return { head: prod & this.ptrMask, end: ring.inc(prod, n, log2), owner: (prod & CMDQ_PROD_OWNED_FLAG) === 0 };
      }
      this.ctx.counters.cmpxchgRetries++;
      old = seen;
    }
  }

  /**
   * Linux's poll_until_not_full: the CPU that takes the lock exclusive copies the hardware CONS
   * into the shadow cons; the others wait on the shadow until the queue is not full. Returns a
   * fresh shadow value. Model choice: when the refreshed cons still leaves no room for `n`, the
   * exclusive winner waits (lock released) for the hardware CONS to move, where Linux would retry
   * at once; a retry loop of register reads starves the SMMU's thread on a 2-core host. Either
   * waiter also recovers a command error, which is what keeps a full queue from draining.
   */
  pollUntilNotFull(n: number, t0: number): bigint {
    const { ctx, state: st, queue: q } = this;
    const log2 = this.log2;
    const describe = (): string => `room for ${n} commands: ${this.describe()}`;
    if (st.exclusiveTryLock()) {
      let hw: number;
      try {
        // A plain load of CONS, not read32: read32 first waits until the SMMU has applied this
        // CPU's own earlier register writes (its doorbells), which needs the SMMU's thread to
        // run, and the exclusive lock would be held all that time while the other CPUs spin on
        // it (with spinning CPUs on 2 cores, for as long as the SMMU's thread stays off a core:
        // up to the 1 s deadline). The ordering buys nothing here: a PROD write does not move
        // CONS, and any value CONS held since is a lower bound of consumption, as the shadow cons
        // must be (§3.5.1: CONS only moves forward).
        hw = ctx.port.peek32(q.consOff) & this.ptrMask;
        st.setCons(hw);
      } finally {
        st.exclusiveUnlock();
      }
      const v = st.load();
      if (ring.space(shadowProd(v), shadowCons(v), log2) >= n) return v;
      if (this.errorPending()) {
        this.recover();
        return st.load();
      }
      const polls = ctx.port.waitReg(q.consOff, (c) => (c & this.ptrMask) !== hw || this.errorPending(), describe, ctx.remaining(t0, describe));
      ctx.counted(polls, ctx.policy);
      if (this.errorPending()) this.recover();
      return st.load();
    }
    // Someone holds the lock (sync waiters shared, or a refresher exclusive): they will move the
    // shadow cons. Wake up when it is no longer full, or when the lock is free to try again.
    ctx.wait(
      st.consGen,
      () => {
        const v = st.load();
        return !ring.isFull(shadowProd(v), shadowCons(v), log2) || st.lockValue() === 0;
      },
      ctx.remaining(t0, describe),
      describe,
      st.sleepers,
    );
    return st.load();
  }

  /**
   * Phase 2: write the entries into [head, end) with plain stores, and the CMD_SYNC in the last
   * slot. A CMD_SYNC waiter takes the lock shared before its slot is marked valid, so that the
   * shadow cons cannot move past its slot until it has seen the CMD_SYNC complete.
   */
  write(r: Reservation, cmds: readonly ArrayLike<number>[], start: number, count: number, sync: boolean): number {
    const log2 = this.log2;
    const u32 = this.ctx.mem.u32;
    let p = r.head;
    for (let k = 0; k < count; k++) {
      writeSlot(u32, this.qWord + (ring.idx(p, log2) << CMD_WORDS_LOG2), cmds[start + k]!);
      p = ring.inc(p, 1, log2);
    }
    if (!sync) return -1;
    const w = this.qWord + (ring.idx(p, log2) << CMD_WORDS_LOG2);
    if (this.ctx.syncMode === 'msi') writeMsiSync(u32, w, this.queue.base + ring.idx(p, log2) * COMMAND_BYTES);
    else writeSlot(u32, w, this.ctx.plainSync);
    this.sharedLock();
    return p;
  }

  /** The shared lock: if an exclusive holder is in, keep the increment and wait until it leaves. */
  sharedLock(): void {
    const st = this.state;
    if (st.sharedLockFast()) return;
    const describe = (): string => `the command queue lock to leave its exclusive state: ${this.describe()}`;
    this.ctx.wait(st.lock, () => st.lockValue() >= 0, this.ctx.policy, describe, st.sleepers);
  }

  /** Phase 3: mark [head, end) valid (the entries' plain stores happen-before the xor). */
  publish(r: Reservation): void {
    this.state.setValid(r.head, r.end);
  }

  /**
   * Phase 4, owner only: wait for the previous owner to hand over, clear OWNED (the returned prod
   * is the end of every reservation made while it was set), wait until all of that is valid,
   * write the hardware PROD once, and hand over to the next owner.
   */
  gather(r: Reservation): void {
    const { ctx, state: st } = this;
    const i32 = st.i32;
    ctx.counters.timesOwner++;
    if (Atomics.load(i32, st.ownerProd) !== r.head) {
      const describe = (): string => `owner_prod to reach ${hex(r.head)} (the previous owner's hand-over): ${this.describe()}`;
      ctx.wait(st.ownerProd, () => Atomics.load(i32, st.ownerProd) === r.head, ctx.policy, describe, st.sleepers);
    }
    const end = (st.clearOwned() & ~CMDQ_PROD_OWNED_FLAG) >>> 0;
    this.pollValid(r.head, end);
    this.doorbell(end);
    Atomics.store(i32, st.ownerProd, end);
    notifySleepers(i32, st.ownerProd, st.sleepers);
  }

  /** Wait until every slot of [start, end) is valid, one bitmap word at a time. */
  pollValid(start: number, end: number): void {
    const { ctx, state: st } = this;
    const log2 = this.log2;
    let p = start;
    while (p !== end) {
      const n = validRun(p, end, log2);
      if (!st.runValid(p, n)) {
        const at = p;
        const word = st.valid + (ring.idx(at, log2) >>> VALID_WORD_SHIFT);
        const describe = (): string =>
          `${n} slots from ${hex(at)} to be marked valid (bitmap word ${hex(Atomics.load(st.i32, word))}), gathering up to ${hex(end)}: ${this.describe()}`;
        ctx.wait(word, () => st.runValid(at, n), ctx.policy, describe, st.sleepers);
      }
      p = ring.inc(p, n, log2);
    }
  }

  /** The one register write of a gathered batch. */
  doorbell(end: number): void {
    const { ctx, queue: q, state: st } = this;
    if (q.ecmdq < 0) {
      // The entries are plain stores; the MMIO FIFO publishes this write with an Atomics store,
      // which orders them before it for the SMMU (Linux's dma_wmb before the PROD write).
      ctx.port.write32(q.prodOff, end);
    } else {
      st.doorbellLock.lock(ctx);
      try {
        ctx.port.write32(q.prodOff, ecmdqProdValue(end, Atomics.load(st.i32, st.errack)));
        Atomics.store(st.i32, st.lastProd, end);
      } finally {
        st.doorbellLock.unlock();
      }
    }
    ctx.counters.doorbells++;
  }

  /**
   * Phase 5: wait for the CMD_SYNC at `syncPtr` (MSI on its own slot, or CONS polling), recovering
   * command errors meanwhile; then leave the shared lock, and if this CPU is the last holder,
   * first write the cons it observed into the shadow word.
   */
  waitSync(syncPtr: number): void {
    const { ctx, state: st } = this;
    ctx.counters.syncs++;
    let cons = -1;
    try {
      cons = this.pollUntilSync(syncPtr);
    } finally {
      if (cons < 0) st.sharedUnlock();
      else if (!st.sharedTryUnlock()) {
        st.setCons(cons);
        st.sharedUnlock();
      }
    }
  }

  /** Wait for the CMD_SYNC at `syncPtr`; returns the cons it implies. */
  private pollUntilSync(syncPtr: number): number {
    return waitForSync(this.ctx, this.queue, this.qWord, syncPtr, this);
  }
}

/** What waitForSync needs of the producer whose CMD_SYNC it waits for. */
export interface SyncWaiter {
  readonly consName: string;
  errorPending(): boolean;
  /** Recover this producer's queue from a command error. */
  recover(): void;
  /** The queue's state, for timeout messages. */
  describe(): string;
}

/**
 * Wait until the CMD_SYNC at `syncPtr` of `q` (whose first word is `qWord` in the board's u32
 * view) has completed: its MSI wrote 0 over its own slot ('msi', Linux's MSIPOLL), or CONS has
 * passed it ('cons'). Command errors seen while waiting are recovered and the wait goes on, under
 * one deadline. Returns the CONS the completion implies.
 */
export function waitForSync(ctx: CpuContext, q: QueueDesc, qWord: number, syncPtr: number, w: SyncWaiter): number {
  const log2 = q.log2;
  const ptrMask = ring.ptrMask(log2);
  const t0 = performance.now();
  const slot = ring.idx(syncPtr, log2);
  const slotPa = q.base + slot * COMMAND_BYTES;
  const slotWord = qWord + (slot << CMD_WORDS_LOG2);
  const u32 = ctx.mem.u32;
  let policy = ctx.syncWaitPolicy(q, syncPtr, () =>
    (ctx.syncMode === 'msi' ? Atomics.load(u32, slotWord) === 0 : ring.consumed(syncPtr, ctx.port.peek32(q.consOff), log2)) || w.errorPending(),
  );
  for (;;) {
    if (ctx.syncMode === 'msi') {
      // The SMMU writes MSIData (0) over the slot's first word when the CMD_SYNC completes, and
      // CONS has passed the CMD_SYNC by then (§4.7.3).
      const describe = (): string =>
        `the CMD_SYNC at ${hex(syncPtr)} to write 0 over its slot at PA 0x${slotPa.toString(16)} (reads ${hex(Atomics.load(u32, slotWord))}): ${w.describe()}`;
      ctx.counted(ctx.mem.waitWord(slotPa, (v) => v === 0 || w.errorPending(), policy, describe), policy);
      if (Atomics.load(u32, slotWord) === 0) return ring.inc(syncPtr, 1, log2);
    } else {
      const describe = (): string => `${w.consName} to pass the CMD_SYNC at ${hex(syncPtr)}: ${w.describe()}`;
      ctx.counted(ctx.port.waitReg(q.consOff, (v) => ring.consumed(syncPtr, v, log2) || w.errorPending(), describe, policy), policy);
      const c = ctx.port.peek32(q.consOff);
      if (ring.consumed(syncPtr, c, log2)) return c & ptrMask;
    }
    w.recover();
    policy = ctx.remaining(t0, () => `the CMD_SYNC at ${hex(syncPtr)}: ${w.describe()}`);
  }
}

/** The offset of a queue's slot word `p` in the board's u32 view (tests). */
export function slotWordIndex(mem: PhysMem, q: QueueDesc, p: number): number {
  return mem.wordIndex(q.base) + (ring.idx(p, q.log2) << CMD_WORDS_LOG2);
}
