/**
 * The multi-producer command insertion (src/driver/cmdq-mp.ts), one thread, with interleavings
 * driven by hand: several MpProducers ("CPUs") share one MpState in the board's RAM, and each
 * phase (reserve, write, publish, gather, waitSync) is called in the order the test chooses. The
 * SMMU is a register stand-in whose CONS and GERROR the test sets.
 *
 * Expected values are hand-derived from the layout the file header documents (Linux's
 * arm_smmu_ll_queue: prod in bits [31:0], cons in [63:32], OWNED = bit 31 of prod), from the
 * queue pointer rules of §3.5.1 (index [log2-1:0], wrap bit log2) and from §6.3.19/20 (GERROR /
 * GERRORN), §6.3.108/109 (ECMDQ PROD.EN [31], ERRACK [23]; CONS.ERR [23], ERR_REASON [26:24]).
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Board, PAGE_64K } from '../../src/mem/board.ts';
import { PhysMem } from '../../src/mem/phys.ts';
import { WaitTimeout, type WaitPolicy } from '../../src/mem/wait.ts';
import * as ring from '../../src/ring/index.ts';
import type { RegisterPort } from '../../src/driver/port.ts';
import { buildSync, consSyncCs } from '../../src/driver/cmdq.ts';
import {
  CMDQ_PROD_OWNED_FLAG,
  CpuContext,
  KERNEL,
  LOCK_EXCLUSIVE,
  MP,
  MpProducer,
  MpState,
  mpStateBytes,
  packShadow,
  runMask,
  shadowCons,
  shadowProd,
  sleepsOf,
  slotWordIndex,
  validRun,
  type QueueDesc,
} from '../../src/driver/cmdq-mp.ts';
import { REG } from '../../src/spec/registers.ts';
import { CERROR_ILL } from '../../src/spec/cerror.ts';
import { CS_SIG_IRQ } from '../../src/spec/commands.ts';
import { encodeCommandWords } from '../../src/spec/command-codec.ts';

const RAM = 0x4000_0000;
const KERNEL_PA = RAM + 0x100;
const QUEUE_PA = RAM + 0x1_0000;
const STATE_PA = RAM + 0x2_0000;
const LOG2 = 7;
const POLICY: WaitPolicy = { mode: 'hybrid', spin: 10, timeoutMs: 30 };
const GERROR = REG.SMMU_GERROR.offset;
const GERRORN = REG.SMMU_GERRORN.offset;
const CMDQ_PROD = REG.SMMU_CMDQ_PROD.offset;
const CMDQ_CONS = REG.SMMU_CMDQ_CONS.offset;
/** SMMU_GERROR bits (§6.3.19): CMDQ_ERR [0], MSI_CMDQ_ABT_ERR [4], CMDQP_ERR [9]. */
const CMDQ_ERR = 1 << 0;
const MSI_CMDQ_ABT_ERR = 1 << 4;
const CMDQP_ERR = 1 << 9;
/** CMD_SYNC with CS = SIG_SEV, MSH = ISH, MSIAttr = OIWB (§4.7.3): what CONS-polling CPUs insert. */
const SEV_SYNC = [0x0fc0_2046, 0, 0, 0];
const hex = (v: number): string => `0x${(v >>> 0).toString(16)}`;

/** Registers as the test sets them; writes are recorded, nothing happens by itself. */
class Regs implements RegisterPort {
  readonly v = new Map<number, number>();
  readonly writes: [number, number][] = [];
  get(off: number): number {
    return this.v.get(off) ?? 0;
  }
  set(off: number, x: number): void {
    this.v.set(off, x >>> 0);
  }
  write32(off: number, value: number): void {
    this.writes.push([off, value >>> 0]);
    this.set(off, value);
  }
  write64Parts(off: number, lo: number, hi: number): void {
    this.writes.push([off, lo >>> 0], [off + 4, hi >>> 0]);
    this.set(off, lo);
    this.set(off + 4, hi);
  }
  read32(off: number): number {
    return this.get(off);
  }
  peek32(off: number): number {
    return this.get(off);
  }
  waitReg(off: number, ready: (v: number) => boolean, describe: () => string): number {
    if (ready(this.get(off))) return 0;
    throw new WaitTimeout(describe(), 0);
  }
  drainOwn(): void {}
}

function setup(o: { prod?: number; cons?: number; ecmdq?: boolean; syncMode?: 'msi' | 'cons' } = {}) {
  const board = Board.create({ windows: [{ name: 'smmu', bytes: 3 * PAGE_64K, base: 0x0905_0000 }], ramBytes: 1 << 20 });
  const mem = new PhysMem(board);
  const regs = new Regs();
  const ecmdq = o.ecmdq ?? false;
  const q: QueueDesc = {
    name: ecmdq ? 'ECMDQ1' : 'CMDQ',
    ecmdq: ecmdq ? 1 : -1,
    base: QUEUE_PA,
    log2: LOG2,
    prodOff: ecmdq ? 0x2_2008 : CMDQ_PROD,
    consOff: ecmdq ? 0x2_200c : CMDQ_CONS,
    mpState: STATE_PA,
    errack: 0,
  };
  const st = new MpState(mem, STATE_PA, LOG2);
  st.init(o.prod ?? 0, o.cons ?? o.prod ?? 0);
  regs.set(q.consOff, o.cons ?? o.prod ?? 0);
  const cpu = (n: number): MpProducer =>
    new MpProducer(new CpuContext(n, mem, regs, POLICY, o.syncMode ?? 'cons', buildSync(consSyncCs(true)), KERNEL_PA), q);
  return { board, mem, regs, q, st, cpu };
}

const tlbi = (asid: number): Uint32Array => encodeCommandWords({ name: 'CMD_TLBI_NH_ASID', ASID: asid, VMID: 0 });
const cmds = (n: number, from = 0): Uint32Array[] => Array.from({ length: n }, (_, i) => tlbi(from + i));
const slot = (s: ReturnType<typeof setup>, p: number): number[] => {
  const w = slotWordIndex(s.mem, s.q, p);
  return [...s.mem.u32.subarray(w, w + 4)];
};
const bitmap = (s: ReturnType<typeof setup>): number[] => [0, 1, 2, 3].map((k) => Atomics.load(s.st.i32, s.st.valid + k) >>> 0);

describe('the shadow word', () => {
  it('packs prod in bits [31:0] and cons in bits [63:32], little-endian in RAM', () => {
    const s = setup();
    Atomics.store(s.st.shadow, 0, packShadow(0x8000_0085, 0x42));
    // Byte layout of arm_smmu_ll_queue on a little-endian CPU: prod first, then cons.
    expect(s.mem.read32(STATE_PA + MP.SHADOW)).toBe(0x8000_0085);
    expect(s.mem.read32(STATE_PA + MP.SHADOW + 4)).toBe(0x42);
    expect(shadowProd(s.st.load())).toBe(0x8000_0085);
    expect(shadowCons(s.st.load())).toBe(0x42);
  });

  it('round-trips every prod and cons a queue can have', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffff_ffff }), fc.integer({ min: 0, max: 0xf_ffff }), (p, c) => {
        const v = packShadow(p, c);
        return shadowProd(v) === p && shadowCons(v) === c;
      }),
    );
  });

  it('keeps every hot word on its own 64-byte line and sizes the bitmap to the queue', () => {
    const offs = [MP.SHADOW, MP.OWNER_PROD, MP.LOCK, MP.CONS_GEN, MP.SLEEPERS, MP.DOORBELL_LOCK, MP.VALID_MAP];
    expect(new Set(offs.map((o) => Math.floor(o / 64))).size).toBe(offs.length);
    // 2^7 slots: 4 words of 32 bits, one line; 2^12 slots: 128 words, 8 lines.
    expect(mpStateBytes(7)).toBe(MP.VALID_MAP + 64);
    expect(mpStateBytes(12)).toBe(MP.VALID_MAP + 512);
  });
});

describe('the valid bitmap', () => {
  it('starts as if the single-producer driver had marked [0, prod) in this lap', () => {
    // prod 0x85: wrap 1 (bit 7), index 5. Slots 0..4 were written in lap 1: bit = !1 = 0;
    // slots 5..127 last in lap 0: bit = !0 = 1.
    const s = setup({ prod: 0x85 });
    expect(bitmap(s)).toEqual([0xffff_ffe0, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]);
    // prod 0x05 (lap 0): slots 0..4 bit 1, the rest never written: 0.
    expect(bitmap(setup({ prod: 0x05 }))).toEqual([0x1f, 0, 0, 0]);
  });

  it('cuts ranges at word ends and at the end of the range', () => {
    expect(validRun(0x00, 0x05, LOG2)).toBe(5);
    expect(validRun(0x1e, 0x40, LOG2)).toBe(2);
    expect(validRun(0x20, 0x60, LOG2)).toBe(32);
    // Across the wrap: 0x7c..0x7f is the end of the last word.
    expect(validRun(0x7c, 0x84, LOG2)).toBe(4);
    expect(runMask(30, 2)).toBe(0xc000_0000 | 0);
    expect(runMask(0, 32)).toBe(-1);
  });

  it('marks a range across the wrap with the polarity of each lap', () => {
    // Start at 120 in lap 0: reserve 16 → [0x78, 0x88): 8 slots in lap 0, 8 in lap 1.
    const s = setup({ prod: 0x78 });
    expect(bitmap(s)).toEqual([0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0x00ff_ffff]);
    const a = s.cpu(0);
    expect(s.st.isValid(0x78, 0x88)).toBe(false);
    a.publish({ head: 0x78, end: 0x88, owner: true });
    // Lap 0 slots 120..127 → 1 (valid when wrap = 0); lap 1 slots 0..7 → 0 (valid when wrap = 1).
    expect(bitmap(s)).toEqual([0xffff_ff00, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]);
    expect(s.st.isValid(0x78, 0x88)).toBe(true);
    // The next lap's use of the same slots starts invalid again without any clearing.
    expect(s.st.isValid(0x178 & ring.ptrMask(LOG2), 0x108 & ring.ptrMask(LOG2))).toBe(false);
  });

  it('is valid exactly after every slot of the range was marked once, over random laps (xor per lap)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 65 }), { minLength: 1, maxLength: 40 }), (sizes) => {
        const s = setup();
        let p = 0;
        for (const n of sizes) {
          const end = ring.inc(p, n, LOG2);
          if (s.st.isValid(p, end)) return false;
          s.st.setValid(p, end);
          if (!s.st.isValid(p, end)) return false;
          p = end;
        }
        return true;
      }),
      { seed: 0x5eed, numRuns: 50 },
    );
  });
});

describe('the lock', () => {
  it('shared holders count up; the last one cannot try-unlock', () => {
    const s = setup();
    expect(s.st.sharedLockFast()).toBe(true);
    expect(s.st.sharedLockFast()).toBe(true);
    expect(s.st.lockValue()).toBe(2);
    expect(s.st.exclusiveTryLock()).toBe(false);
    expect(s.st.sharedTryUnlock()).toBe(true);
    expect(s.st.sharedTryUnlock()).toBe(false); // the last reader must update the shadow cons first
    expect(s.st.lockValue()).toBe(1);
    s.st.sharedUnlock();
    expect(s.st.lockValue()).toBe(0);
  });

  it('exclusive unlock keeps the shared increments made meanwhile (the fairness fix)', () => {
    const s = setup();
    expect(s.st.exclusiveTryLock()).toBe(true);
    expect(s.st.lockValue()).toBe(LOCK_EXCLUSIVE);
    expect(s.st.exclusiveTryLock()).toBe(false);
    // Two CPUs arrive for the shared lock: they keep their increments and wait.
    expect(s.st.sharedLockFast()).toBe(false);
    expect(s.st.sharedLockFast()).toBe(false);
    expect(s.st.lockValue()).toBe(LOCK_EXCLUSIVE + 2);
    s.st.exclusiveUnlock();
    // Only the sign bit went: both waiters now hold it shared. (Storing 0 lost them.)
    expect(s.st.lockValue()).toBe(2);
  });

  it('a shared locker waits while the lock is exclusive, and says so when the wait times out', () => {
    const s = setup();
    const a = s.cpu(0);
    s.st.exclusiveTryLock();
    expect(() => a.sharedLock()).toThrow(/command queue lock to leave its exclusive state: CMDQ: shadow prod 0x00000000 cons 0x00000000, owner_prod 0x00000000, lock -2147483647/);
  });
});

describe('insertion, phase by phase', () => {
  it('the first reserver owns; a second gathers nothing of its own; one doorbell covers both', () => {
    const s = setup({ prod: 0x10 });
    const [a, b, c] = [s.cpu(0), s.cpu(1), s.cpu(2)];
    const ra = a.reserve(3);
    expect(ra).toEqual({ head: 0x10, end: 0x13, owner: true });
    expect(shadowProd(s.st.load()) >>> 0).toBe((0x13 | CMDQ_PROD_OWNED_FLAG) >>> 0);
    const rb = b.reserve(2);
    expect(rb).toEqual({ head: 0x13, end: 0x15, owner: false });
    expect(shadowProd(s.st.load()) >>> 0).toBe((0x15 | CMDQ_PROD_OWNED_FLAG) >>> 0);
    // B (non-owner) finishes first; A is slower.
    b.write(rb, cmds(2, 100), 0, 2, false);
    b.publish(rb);
    expect(s.st.isValid(0x10, 0x15)).toBe(false);
    a.write(ra, cmds(3), 0, 3, false);
    a.publish(ra);
    expect(s.st.isValid(0x10, 0x15)).toBe(true);
    a.gather(ra);
    // One PROD write with the end of everything gathered (§3.5.2: PROD = next free slot).
    expect(s.regs.writes).toEqual([[CMDQ_PROD, 0x15]]);
    expect(Atomics.load(s.st.i32, s.st.ownerProd)).toBe(0x15);
    expect(shadowProd(s.st.load())).toBe(0x15);
    expect(slot(s, 0x13)).toEqual([...tlbi(100)]);
    // OWNED is clear: the next reserver is an owner again.
    expect(c.reserve(1)).toEqual({ head: 0x15, end: 0x16, owner: true });
    expect([a, b, c].map((x) => x.ctx.counters.timesOwner)).toEqual([1, 0, 0]);
  });

  it('an owner waits for the previous owner to hand over, and for every gathered slot to be valid', () => {
    const s = setup();
    const [a, b] = [s.cpu(0), s.cpu(1)];
    const ra = a.reserve(2);
    // A clears OWNED but has not yet handed over when B reserves: B is an owner too.
    expect(s.st.clearOwned() >>> 0).toBe((0x2 | CMDQ_PROD_OWNED_FLAG) >>> 0);
    const rb = b.reserve(1);
    expect(rb.owner).toBe(true);
    b.write(rb, cmds(1), 0, 1, false);
    b.publish(rb);
    expect(() => b.gather(rb)).toThrow(/owner_prod to reach 0x00000002 \(the previous owner's hand-over\): CMDQ: shadow prod 0x00000003 OWNED cons 0x00000000, owner_prod 0x00000000/);
    // An owner whose range holds an unpublished slot (0x2, bit 2) waits for it, naming the bitmap word.
    const s2 = setup();
    const c = s2.cpu(0);
    const r = c.reserve(2);
    s2.cpu(1).reserve(1);
    c.write(r, cmds(2), 0, 2, false);
    c.publish(r);
    expect(() => c.gather(r)).toThrow(/3 slots from 0x00000000 to be marked valid \(bitmap word 0x00000003\), gathering up to 0x00000003: .*SMMU_CMDQ_PROD 0x00000000, SMMU_CMDQ_CONS 0x00000000, SMMU_GERROR 0x00000000/);
    void ra;
  });

  it('counts a failed compareExchange as a retry and reserves from the value it found', () => {
    const s = setup({ prod: 0x20 });
    const a = s.cpu(0);
    // Another CPU's reservation lands between A's load and A's compareExchange.
    const seen = a.state.load();
    const st = a.state as unknown as { cas: (e: bigint, n: bigint) => bigint };
    const real = a.state.cas.bind(a.state);
    let raced = false;
    st.cas = (e, n) => {
      if (!raced) {
        raced = true;
        real(seen, packShadow((0x24 | CMDQ_PROD_OWNED_FLAG) >>> 0, 0x20));
      }
      return real(e, n);
    };
    expect(a.reserve(4)).toEqual({ head: 0x24, end: 0x28, owner: false });
    expect(a.ctx.counters.cmpxchgRetries).toBe(1);
  });

  it('a full queue: the exclusive winner copies the hardware CONS into the shadow cons', () => {
    // 128 entries in use: PROD 0x80 (wrap 1, index 0), CONS 0 (wrap 0, index 0): full (§3.5.1).
    const s = setup({ prod: 0x80, cons: 0 });
    const a = s.cpu(0);
    s.regs.set(CMDQ_CONS, 0x40);
    const gen = Atomics.load(s.st.i32, s.st.consGen);
    expect(a.reserve(10)).toEqual({ head: 0x80, end: 0x8a, owner: true });
    expect(shadowCons(s.st.load())).toBe(0x40);
    expect(Atomics.load(s.st.i32, s.st.consGen)).toBe(gen + 1);
    expect(s.st.lockValue()).toBe(0);
  });

  it('a full queue while the lock is held shared: the CPU waits for the shadow, not the hardware', () => {
    const s = setup({ prod: 0x80, cons: 0 });
    const a = s.cpu(0);
    s.regs.set(CMDQ_CONS, 0x40);
    s.st.sharedLockFast(); // a CMD_SYNC waiter
    expect(() => a.reserve(10)).toThrow(/room for 10 commands: CMDQ: shadow prod 0x00000080 cons 0x00000000, owner_prod 0x00000080, lock 1; SMMU_CMDQ_PROD 0x00000000, SMMU_CMDQ_CONS 0x00000040/);
    expect(shadowCons(s.st.load())).toBe(0);
  });

  it('the last CMD_SYNC waiter to leave writes the shadow cons; an earlier one does not (CONS polling)', () => {
    const s = setup({ prod: 0x10 });
    const [a, b] = [s.cpu(0), s.cpu(1)];
    const pa = a.insert(cmds(2), 0, 2, true);
    const pb = b.insert(cmds(1, 50), 0, 1, true);
    expect([pa, pb]).toEqual([0x12, 0x14]);
    expect(slot(s, pa)).toEqual(SEV_SYNC);
    expect(s.regs.writes).toEqual([[CMDQ_PROD, 0x13], [CMDQ_PROD, 0x15]]);
    expect(s.st.lockValue()).toBe(2);
    s.regs.set(CMDQ_CONS, 0x15); // the SMMU consumed everything
    b.waitSync(pb);
    expect(s.st.lockValue()).toBe(1);
    expect(shadowCons(s.st.load())).toBe(0x10);
    a.waitSync(pa);
    expect(s.st.lockValue()).toBe(0);
    expect(shadowCons(s.st.load())).toBe(0x15);
    expect([a.ctx.counters.syncs, a.ctx.counters.commands, b.ctx.counters.commands]).toEqual([1, 2, 1]);
  });

  it('MSI polling: the CMD_SYNC aims its MSI at its own slot; completion is that word reading 0', () => {
    const s = setup({ prod: 0x7e, syncMode: 'msi' });
    const a = s.cpu(0);
    const p = a.insert(cmds(2), 0, 2, true);
    expect(p).toBe(0x80); // wrap 1, index 0: the slot at QUEUE_PA
    const w = slot(s, p);
    // CS = SIG_IRQ [13:12], MSIAddress[55:2] at [119:66] = QUEUE_PA (§4.7.3).
    expect((w[0]! >>> 12) & 3).toBe(CS_SIG_IRQ);
    expect(w[2]).toBe(QUEUE_PA);
    expect(() => a.waitSync(p)).toThrow(/the CMD_SYNC at 0x00000080 to write 0 over its slot at PA 0x40010000/);
    expect(s.st.lockValue()).toBe(0); // a timed-out waiter leaves the lock
    const p2 = a.insert([], 0, 0, true);
    s.mem.write32(QUEUE_PA + ring.idx(p2, LOG2) * 16, 0); // the SMMU's MSI
    a.waitSync(p2);
    expect(shadowCons(s.st.load())).toBe(ring.inc(p2, 1, LOG2));
  });
});

describe('error recovery', () => {
  it('exactly one CPU fixes the command in error and acknowledges CMDQ_ERR alone', () => {
    const s = setup({ prod: 0x10 });
    const [a, b] = [s.cpu(0), s.cpu(1)];
    const bad = [0x08, 1, 2, 3];
    s.mem.writeWords(QUEUE_PA + 0x11 * 16, bad);
    // CONS.RD 0x11 with ERR = CERROR_ILL [30:24]; CMDQ_ERR and MSI_CMDQ_ABT_ERR active (§7.1).
    s.regs.set(CMDQ_CONS, (CERROR_ILL << 24) | 0x11);
    s.regs.set(GERROR, CMDQ_ERR | MSI_CMDQ_ABT_ERR);
    expect(a.errorPending()).toBe(true);
    expect(a.recover()).toBe(true);
    expect(slot(s, 0x11)).toEqual(SEV_SYNC);
    // Only CMDQ_ERR toggled in GERRORN: MSI_CMDQ_ABT_ERR stays active for its own handler.
    expect(s.regs.writes).toEqual([[GERRORN, CMDQ_ERR]]);
    expect(b.errorPending()).toBe(false);
    expect(b.recover()).toBe(false);
    expect(s.regs.writes).toHaveLength(1);
    expect(a.ctx.log).toEqual([{ kind: 'cmdq-skip', queue: 'CMDQ', cons: 0x11, code: CERROR_ILL, name: 'CERROR_ILL', words: bad, replacement: SEV_SYNC }]);
    expect([a.ctx.counters.errorsRecovered, b.ctx.counters.errorsRecovered]).toEqual([1, 0]);
  });

  it('a CPU that finds the handler lock taken waits for it (and names the holder on timeout)', () => {
    const s = setup();
    const [a, b] = [s.cpu(0), s.cpu(3)];
    s.regs.set(GERROR, CMDQ_ERR);
    expect(b.ctx.handler.tryLock(3)).toBe(true);
    expect(() => a.recover()).toThrow(/the GERROR handler lock \(held by CPU 3\)/);
    b.ctx.handler.unlock();
    expect(s.mem.read32(KERNEL_PA + KERNEL.HANDLER_LOCK)).toBe(0);
  });

  it('a shared ECMDQ: PROD writes carry EN and ERRACK; recovery flips ERRACK on the last PROD', () => {
    const s = setup({ prod: 0x10, ecmdq: true });
    const [a, b] = [s.cpu(0), s.cpu(1)];
    a.insert(cmds(3), 0, 3, false);
    // SMMU_ECMDQ_PROD (§6.3.108): EN [31] = 1, ERRACK [23] = 0, WR = 0x13.
    expect(s.regs.writes).toEqual([[s.q.prodOff, 0x8000_0013]]);
    // The SMMU stops at 0x11: CONS.ERR [23] toggles to 1, ERR_REASON [26:24] = CERROR_ILL;
    // GERROR.CMDQP_ERR activates (§3.5.6.3).
    s.regs.set(s.q.consOff, 0x8000_0000 | (CERROR_ILL << 24) | (1 << 23) | 0x11);
    s.regs.set(GERROR, CMDQP_ERR);
    expect(b.errorPending()).toBe(true);
    expect(b.recover()).toBe(true);
    expect(slot(s, 0x11)).toEqual(SEV_SYNC);
    expect(s.regs.writes.slice(1)).toEqual([[s.q.prodOff, 0x8080_0013], [GERRORN, CMDQP_ERR]]);
    expect(a.errorPending()).toBe(false);
    expect(a.recover()).toBe(false);
    a.insert(cmds(1), 0, 1, false);
    expect(s.regs.writes.at(-1)).toEqual([s.q.prodOff, 0x8080_0014]);
    expect(hex(Atomics.load(s.st.i32, s.st.lastProd))).toBe('0x14');
  });
});

describe('counters', () => {
  it('derives sleeps from polls and the wait policy', () => {
    expect(sleepsOf(15, { mode: 'hybrid', spin: 10, timeoutMs: 1 })).toBe(5);
    expect(sleepsOf(7, { mode: 'hybrid', spin: 10, timeoutMs: 1 })).toBe(0);
    expect(sleepsOf(7, { mode: 'wait', spin: 10, timeoutMs: 1 })).toBe(7);
    expect(sleepsOf(7, { mode: 'spin', spin: 10, timeoutMs: 1 })).toBe(0);
  });
});
