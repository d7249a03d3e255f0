/**
 * ECMDQs, driver side (src/driver/ecmdq.ts, the ECMDQ parts of src/driver/cpu.ts).
 *
 * First against FakeEcmdqSmmu, a synchronous stand-in in the test's thread that plays the ECMDQ
 * registers as §3.5.6 and §6.3.107-109 describe: BASE/CONS writable only while EN == ENACK == 0,
 * ENACK following EN, consumption while enabled and PROD.ERRACK == CONS.ERR, and on an illegal
 * command CONS.ERR toggled, ERR_REASON set, RD left on the command, GERROR.CMDQP_ERR activated if
 * inactive (§3.5.6.3). The end-to-end ECMDQ tests (CPU workers and the SMMU device worker) are
 * in test/system/multi-cpu.test.ts.
 *
 * Register values are hand-derived from §6.3.45 (IDR6: LOG2NUMP [27:24], LOG2NUMQ [19:16]),
 * §6.3.49 (CONTROL_PAGE_BASE: ADDR [55:16] as an offset from Page 0, CMDQGS [2:1], PRESET [0]),
 * §6.2.5 (queues evenly spaced in a 64KB page), §6.3.107 (BASE: RA [62], ADDR [55:5],
 * LOG2SIZE [4:0]), §6.3.108 (PROD: EN [31], ERRACK [23], WR), §6.3.109 (CONS: ENACK [31],
 * ERR_REASON [26:24], ERR [23], RD), §6.3.19 (GERROR.CMDQP_ERR [9]).
 */
import { describe, expect, it } from 'vitest';
import { Board, PAGE_64K } from '../../src/mem/board.ts';
import { PhysMem, PhysAllocator } from '../../src/mem/phys.ts';
import { WaitTimeout, type WaitPolicy } from '../../src/mem/wait.ts';
import * as ring from '../../src/ring/index.ts';
import type { RegisterPort } from '../../src/driver/port.ts';
import { buildSync, consSyncCs } from '../../src/driver/cmdq.ts';
import { CpuContext, type QueueDesc } from '../../src/driver/cmdq-mp.ts';
import { EcmdqProducer, ecmdqRegs, enableEcmdq, probeEcmdqs } from '../../src/driver/ecmdq.ts';
import { shareCommandQueues } from '../../src/driver/cpu.ts';
import { decodeCommand, encodeCommandWords } from '../../src/spec/command-codec.ts';
import { CERROR_ILL } from '../../src/spec/cerror.ts';
import { OP, CS_SIG_IRQ } from '../../src/spec/commands.ts';
import { FULL_FEATURES, parseFeatures, validateFeatures, type SmmuFeatures } from '../../src/spec/features.ts';
import { idrFromFeatures } from '../../src/spec/idr.ts';
import { REG, controlPageBaseValue, controlPageCount, ecmdqRegisterAt, ecmdqRegisterOffset, smmuRegWindow } from '../../src/spec/registers.ts';

const RAM = 0x4000_0000;
const POLICY: WaitPolicy = { mode: 'hybrid', spin: 10, timeoutMs: 30 };
const GERROR = REG.SMMU_GERROR.offset;
const GERRORN = REG.SMMU_GERRORN.offset;
const CMDQP_ERR = 1 << 9;
const EN = 0x8000_0000;
const ERRACK = 1 << 23;
/** CMD_SYNC with CS = SIG_SEV, MSH = ISH, MSIAttr = OIWB (§4.7.3). */
const SEV_SYNC = [0x0fc0_2046, 0, 0, 0];
const hex = (v: number): string => `0x${(v >>> 0).toString(16)}`;

interface Q {
  en: number;
  enack: number;
  errack: number;
  err: number;
  reason: number;
  prod: number;
  cons: number;
}

/** The ECMDQ registers of an SMMU, played synchronously (see the file header). */
class FakeEcmdqSmmu implements RegisterPort {
  readonly v = new Map<number, number>();
  readonly writes: string[] = [];
  readonly consumed: [number, number[]][] = [];
  readonly qs: Q[];
  /** Whether ENACK follows EN. */
  ackEnable = true;
  /** Whether a CONS write while disabled sets ERR (§6.3.109 makes CONS RW then). */
  consErrWritable = true;

  constructor(readonly mem: PhysMem, readonly f: SmmuFeatures) {
    const idr = idrFromFeatures(f);
    this.v.set(REG.SMMU_IDR0.offset, idr.IDR0);
    this.v.set(REG.SMMU_IDR1.offset, idr.IDR1);
    this.v.set(REG.SMMU_IDR6.offset, idr.IDR6);
    for (let p = 0; p < controlPageCount(f); p++) this.v.set(0x4000 + 32 * p, controlPageBaseValue(p));
    this.qs = Array.from({ length: f.ecmdq ? 1 << (f.ecmdqLog2NumP + f.ecmdqLog2NumQ) : 0 }, () => ({ en: 0, enack: 0, errack: 0, err: 0, reason: 0, prod: 0, cons: 0 }));
  }

  get(off: number): number {
    const e = ecmdqRegisterAt(this.f, off);
    if (e !== undefined && e.spec.name === 'SMMU_ECMDQ_CONS') {
      const q = this.qs[e.n]!;
      return ((q.enack << 31) | (q.reason << 24) | (q.err << 23) | q.cons) >>> 0;
    }
    return this.v.get(off) ?? 0;
  }

  write32(off: number, value: number): void {
    const v = value >>> 0;
    const e = ecmdqRegisterAt(this.f, off);
    this.writes.push(`${e !== undefined ? `${e.spec.name}${e.n}` : (REG.SMMU_GERRORN.offset === off ? 'SMMU_GERRORN' : hex(off))} = ${hex(v)}`);
    if (e === undefined) {
      this.v.set(off, v);
      return;
    }
    const q = this.qs[e.n]!;
    const disabled = q.en === 0 && q.enack === 0;
    switch (e.spec.name) {
      case 'SMMU_ECMDQ_BASE':
        if (disabled) this.v.set(off, v);
        return;
      case 'SMMU_ECMDQ_CONS':
        if (disabled) {
          q.cons = v & 0xf_ffff;
          if (this.consErrWritable) q.err = (v >>> 23) & 1;
        }
        return;
      case 'SMMU_ECMDQ_PROD':
        this.v.set(off, v);
        q.en = v >>> 31;
        q.errack = (v >>> 23) & 1;
        q.prod = v & 0xf_ffff;
        if (this.ackEnable) q.enack = q.en;
        this.consume(e.n);
    }
  }

  write64Parts(off: number, lo: number, hi: number): void {
    this.write32(off, lo);
    this.write32(off + 4, hi);
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

  /** Consume while enabled and ERRACK == ERR; stop at an illegal (Reserved) opcode. */
  consume(n: number): void {
    const q = this.qs[n]!;
    if (q.enack === 0 || q.errack !== q.err) return;
    const baseOff = ecmdqRegisterOffset(this.f, n, 'BASE');
    const lo = this.get(baseOff);
    const log2 = lo & 0x1f;
    const base = (lo & ~0x1f) >>> 0;
    while (!ring.isEmpty(q.prod, q.cons, log2)) {
      const words: number[] = [];
      this.mem.readWords(base + ring.idx(q.cons, log2) * 16, words, 4);
      const d = decodeCommand(words);
      if (d.cls === 'reserved') {
        q.err ^= 1;
        q.reason = CERROR_ILL;
        const g = this.get(GERROR);
        if (((g ^ this.get(GERRORN)) & CMDQP_ERR) === 0) this.v.set(GERROR, (g ^ CMDQP_ERR) >>> 0);
        return;
      }
      this.consumed.push([n, words]);
      q.cons = ring.inc(q.cons, 1, log2);
      if (d.opcode === OP.CMD_SYNC && d.fields.CS === CS_SIG_IRQ) this.mem.storeNotify32(Number(d.fields.MSIAddress), Number(d.fields.MSIData));
    }
  }
}

function board(f: SmmuFeatures) {
  const b = Board.create({ windows: [{ name: 'smmu', bytes: smmuRegWindow(f), base: 0x0905_0000 }], ramBytes: 1 << 20 });
  return { b, mem: new PhysMem(b) };
}

const features = (s: string): SmmuFeatures => parseFeatures(s);

describe('probe', () => {
  it('finds 2^LOG2NUMP pages of 2^LOG2NUMQ queues, where the register table puts them', () => {
    for (const f of [FULL_FEATURES, features('ecmdq-log2nump=2,ecmdq-log2numq=2'), features('ecmdq-log2nump=0,ecmdq-log2numq=8')]) {
      const { mem } = board(f);
      const info = probeEcmdqs(new FakeEcmdqSmmu(mem, f));
      expect(info.reason).toBeUndefined();
      expect(info.count).toBe(1 << (f.ecmdqLog2NumP + f.ecmdqLog2NumQ));
      for (let n = 0; n < info.count; n++) {
        const r = ecmdqRegs(info, n);
        expect([r.baseOff, r.prodOff, r.consOff]).toEqual([ecmdqRegisterOffset(f, n, 'BASE'), ecmdqRegisterOffset(f, n, 'PROD'), ecmdqRegisterOffset(f, n, 'CONS')]);
      }
    }
    // FULL_FEATURES: one page at 0x20000 of 8 queues, 64KB / 8 = 0x2000 apart: ECMDQ5's PROD at 0x2a008.
    const { mem } = board(FULL_FEATURES);
    const info = probeEcmdqs(new FakeEcmdqSmmu(mem, FULL_FEATURES));
    expect(info).toEqual({ count: 8, log2NumP: 0, log2NumQ: 3, pages: [0x20000], stride: 0x2000 });
    expect(ecmdqRegs(info, 5)).toEqual({ baseOff: 0x2a000, prodOff: 0x2a008, consOff: 0x2a00c });
  });

  it('refuses an SMMU without ECMDQs, control pages in memory (PRESET == 0), other granules and gaps', () => {
    const none = features('no-ecmdq');
    expect(probeEcmdqs(new FakeEcmdqSmmu(board(none).mem, none))).toMatchObject({ count: 0, reason: 'SMMU_IDR1.ECMDQ == 0: the SMMU has no ECMDQs' });
    const f = features('ecmdq-log2nump=1,ecmdq-log2numq=2');
    const s = new FakeEcmdqSmmu(board(f).mem, f);
    s.v.set(0x4020, controlPageBaseValue(1) & ~1); // page 1: PRESET = 0
    expect(probeEcmdqs(s)).toMatchObject({ count: 0, reason: 'SMMU_CMDQ_CONTROL_PAGE_BASE1.CMDQ_CONTROL_PAGE_PRESET == 0: ECMDQs in memory are not supported' });
    s.v.set(0x4020, controlPageBaseValue(1) & ~0b110); // CMDQGS = 0
    expect(probeEcmdqs(s).reason).toBe('SMMU_CMDQ_CONTROL_PAGE_BASE1.CMDQGS == 0: only the 64KB granule is defined');
    s.v.set(0x4020, controlPageBaseValue(2)); // page 1 claims to be at 0x40000
    expect(probeEcmdqs(s).reason).toBe('control page 1 at 0x40000 does not follow page 0: the pages are not contiguous');
  });
});

describe('enable', () => {
  it('writes BASE, PROD, CONS with the queue disabled, then PROD.EN, and waits for ENACK', () => {
    const { mem } = board(FULL_FEATURES);
    const s = new FakeEcmdqSmmu(mem, FULL_FEATURES);
    const info = probeEcmdqs(s);
    expect(enableEcmdq(s, 2, ecmdqRegs(info, 2), RAM + 0x1000, 8, POLICY)).toBe(0);
    // BASE: RA [62] → high word 0x40000000; ADDR 0x40001000; LOG2SIZE 8.
    expect(s.writes).toEqual([
      'SMMU_ECMDQ_BASE2 = 0x40001008',
      'SMMU_ECMDQ_BASE2 = 0x40000000',
      'SMMU_ECMDQ_PROD2 = 0x0',
      'SMMU_ECMDQ_CONS2 = 0x0',
      'SMMU_ECMDQ_PROD2 = 0x80000000',
    ]);
    expect(s.qs[2]).toMatchObject({ en: 1, enack: 1, errack: 0, err: 0 });
    // Again, now enabled and with CONS.ERR = 1 that the SMMU keeps: disable first, then enable
    // with ERRACK = 1 so that ERRACK == ERR (§3.5.6.3).
    s.writes.length = 0;
    s.qs[2]!.err = 1;
    s.consErrWritable = false;
    expect(enableEcmdq(s, 2, ecmdqRegs(info, 2), RAM + 0x1000, 8, POLICY)).toBe(1);
    expect(s.writes[0]).toBe('SMMU_ECMDQ_PROD2 = 0x0');
    expect(s.writes.at(-1)).toBe('SMMU_ECMDQ_PROD2 = 0x80800000');
  });

  it('times out, naming the register, when ENACK does not follow', () => {
    const { mem } = board(FULL_FEATURES);
    const s = new FakeEcmdqSmmu(mem, FULL_FEATURES);
    s.ackEnable = false;
    expect(() => enableEcmdq(s, 1, ecmdqRegs(probeEcmdqs(s), 1), RAM, 7, POLICY)).toThrow(
      /SMMU_ECMDQ_CONS1.ENACK to read 1 after writing SMMU_ECMDQ_PROD1 = 0x80000000; it reads 0x00000000/,
    );
  });
});

describe('a CPU on its own ECMDQ', () => {
  function own(syncMode: 'msi' | 'cons') {
    const { mem } = board(FULL_FEATURES);
    const s = new FakeEcmdqSmmu(mem, FULL_FEATURES);
    const info = probeEcmdqs(s);
    const r = ecmdqRegs(info, 3);
    const base = RAM + 0x8000;
    const errack = enableEcmdq(s, 3, r, base, 7, POLICY);
    const q: QueueDesc = { name: 'ECMDQ3', ecmdq: 3, base, log2: 7, prodOff: r.prodOff, consOff: r.consOff, mpState: -1, errack };
    s.writes.length = 0;
    const ctx = new CpuContext(0, mem, s, POLICY, syncMode, buildSync(consSyncCs(true)), RAM);
    return { s, mem, q, ctx, p: new EcmdqProducer(ctx, q) };
  }
  const tlbi = (asid: number): Uint32Array => encodeCommandWords({ name: 'CMD_TLBI_NH_ASID', ASID: asid, VMID: 0 });

  it.each(['cons', 'msi'] as const)('inserts with one PROD write carrying EN, and waits on its own queue (%s)', (mode) => {
    const { s, p, ctx } = own(mode);
    const sp = p.insert([tlbi(1), tlbi(2), tlbi(3)], 0, 3, true);
    expect(sp).toBe(3);
    expect(s.writes).toEqual(['SMMU_ECMDQ_PROD3 = 0x80000004']);
    p.waitSync(sp);
    expect(s.consumed.map(([n, w]) => [n, decodeCommand(w).name])).toEqual([
      [3, 'CMD_TLBI_NH_ASID'],
      [3, 'CMD_TLBI_NH_ASID'],
      [3, 'CMD_TLBI_NH_ASID'],
      [3, 'CMD_SYNC'],
    ]);
    expect(ctx.counters).toMatchObject({ commands: 3, syncs: 1, doorbells: 1, timesOwner: 1, cmpxchgRetries: 0 });
  });

  it('recovers an error of its queue through ERRACK, and acknowledges CMDQP_ERR alone', () => {
    const { s, p, ctx, mem, q } = own('cons');
    s.v.set(GERROR, 1 << 4); // another error (MSI_CMDQ_ABT_ERR) stays for its own handler
    const bad = [0x08, 0, 0, 0];
    const sp = p.insert([tlbi(1), bad, tlbi(3)], 0, 3, true);
    // The SMMU stopped at pointer 1: CONS = ENACK | ERR_REASON ILL | ERR | RD 1.
    expect(hex(s.get(q.consOff))).toBe('0x81800001');
    expect(p.errorPending()).toBe(true);
    p.waitSync(sp);
    expect(s.writes.slice(1)).toEqual(['SMMU_ECMDQ_PROD3 = 0x80800004', `SMMU_GERRORN = ${hex(CMDQP_ERR)}`]);
    expect(mem.readBytes(q.base + 16, 16)).toEqual(new Uint8Array(new Uint32Array(SEV_SYNC).buffer));
    expect(ctx.log).toEqual([{ kind: 'cmdq-skip', queue: 'ECMDQ3', cons: 1, code: CERROR_ILL, name: 'CERROR_ILL', words: bad, replacement: SEV_SYNC }]);
    expect(ctx.errors).toEqual([{ queue: 'ECMDQ3', index: 1, code: CERROR_ILL, name: 'CERROR_ILL' }]);
    // A second error toggles ERR back to 0; ERRACK follows.
    s.writes.length = 0;
    p.waitSync(p.insert([bad], 0, 1, true));
    // CMDQP_ERR was inactive again, so the SMMU toggled GERROR[9] back; the acknowledgement
    // toggles GERRORN[9] back to match (§6.3.20).
    expect(s.writes).toEqual(['SMMU_ECMDQ_PROD3 = 0x80800006', 'SMMU_ECMDQ_PROD3 = 0x80000006', 'SMMU_GERRORN = 0x0']);
    expect(s.consumed.filter(([, w]) => w[0] === 0x08)).toEqual([]);
    expect(ctx.counters.errorsRecovered).toBe(2);
  });
});

describe('sharing the queues (the resetting CPU)', () => {
  function driverView(f: SmmuFeatures) {
    const { mem } = board(f);
    const s = new FakeEcmdqSmmu(mem, f);
    const alloc = new PhysAllocator(mem, RAM + 0x4_0000, RAM + (1 << 20));
    return { s, mem, alloc, drv: { port: s, mem, features: f, cmdq: { base: RAM, log2: 8, prod: 6 } } };
  }
  const opts = { syncMode: 'cons' as const, policy: POLICY, cmdq: 'ecmdq' as const };

  it('gives each CPU its own ECMDQ when there are enough', () => {
    const { s, drv, alloc } = driverView(FULL_FEATURES);
    const l = shareCommandQueues(drv, alloc, { ...opts, cpus: 4 });
    expect(l).toMatchObject({ mode: 'ecmdq', cpus: 4, syncMode: 'cons', sev: true, cpuQueue: [0, 1, 2, 3] });
    expect(l.fallback).toBeUndefined();
    expect(l.queues.map((q) => [q.name, q.ecmdq, q.log2, q.mpState, q.errack, hex(q.prodOff)])).toEqual([
      ['ECMDQ0', 0, 8, -1, 0, '0x20008'],
      ['ECMDQ1', 1, 8, -1, 0, '0x22008'],
      ['ECMDQ2', 2, 8, -1, 0, '0x24008'],
      ['ECMDQ3', 3, 8, -1, 0, '0x26008'],
    ]);
    // 2^8 entries × 16 bytes, aligned to the size (§6.3.107), distinct.
    expect(new Set(l.queues.map((q) => q.base)).size).toBe(4);
    expect(l.queues.every((q) => q.base % 4096 === 0)).toBe(true);
    expect(s.qs.map((q) => q.enack)).toEqual([1, 1, 1, 1, 0, 0, 0, 0]);
  });

  it('lets CPUs share ECMDQs (multi-producer) when they outnumber them', () => {
    const f = validateFeatures({ ...FULL_FEATURES, ecmdqLog2NumQ: 1 });
    const { drv, alloc } = driverView(f);
    const l = shareCommandQueues(drv, alloc, { ...opts, cpus: 3 });
    expect(l.cpuQueue).toEqual([0, 1, 0]);
    expect(l.queues[0]!.mpState).toBeGreaterThan(0);
    expect(l.queues[1]!.mpState).toBe(-1);
  });

  it('falls back to the shared CMDQ without ECMDQs, or when one does not enable', () => {
    const none = features('no-ecmdq');
    const a = driverView(none);
    const l = shareCommandQueues(a.drv, a.alloc, { ...opts, cpus: 2 });
    expect(l).toMatchObject({ mode: 'shared', fallback: 'SMMU_IDR1.ECMDQ == 0: the SMMU has no ECMDQs', cpuQueue: [0, 0] });
    expect(l.queues).toMatchObject([{ name: 'CMDQ', ecmdq: -1, base: RAM, log2: 8 }]);
    const b = driverView(FULL_FEATURES);
    b.s.ackEnable = false;
    const l2 = shareCommandQueues(b.drv, b.alloc, { ...opts, cpus: 2 });
    expect(l2.mode).toBe('shared');
    expect(l2.fallback).toMatch(/^ECMDQ0 did not enable: timed out .* SMMU_ECMDQ_CONS0.ENACK to read 1/);
    expect(b.s.qs[0]!.en).toBe(0);
  });
});
